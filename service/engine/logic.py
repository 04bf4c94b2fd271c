"""Three-valued (Kleene) conditions over findings.

A fact is None when unknown. An atom on an unknown fact is unknown, never false, so a rule
can only fire on what was actually reported, and an unknown can be turned into a question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Truth = bool | None  # None: unknown
Facts = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    truth: Truth
    matched: tuple[str, ...] = ()  # facts that made a true condition true (or are true in an unknown one)
    open: tuple[str, ...] = ()  # unknown facts that could still make it true
    alone: tuple[str, ...] = ()  # those of them that, found abnormal, would make it true on their own


TRUE = Outcome(True)
FALSE = Outcome(False)


@dataclass(frozen=True, slots=True)
class PartialSet:
    """A set finding known only in part (from FHIR, one member at a time): members not listed are unknown."""

    present: frozenset
    absent: frozenset


# (reported value, the atom's value) -> true or false; "unknown" is decided before any of these.
OPERATORS = {
    "is": lambda actual, value: actual == value,
    "in": lambda actual, value: actual in value,
    "has": lambda actual, value: value in actual,
    "has_any": lambda actual, value: not value.isdisjoint(actual),
    "at_least": lambda actual, value: actual >= value,
    "below": lambda actual, value: actual < value,
    "empty": lambda actual, value: not actual,
}


@dataclass(frozen=True, slots=True)
class Atom:
    fact: str
    op: str  # is | in | has | has_any | empty | at_least | below | unknown
    value: Any

    def check(self, facts: Facts) -> Outcome:
        actual = facts.get(self.fact)
        if self.op == "unknown":  # what is known about the finding: never itself unknown
            return Outcome(True, matched=(self.fact,)) if actual is None else FALSE
        if actual is None:
            return Outcome(None, open=(self.fact,), alone=(self.fact,))
        if isinstance(actual, PartialSet):
            return self._check_partial(actual)
        return Outcome(True, matched=(self.fact,)) if OPERATORS[self.op](actual, self.value) else FALSE

    def _check_partial(self, actual: PartialSet) -> Outcome:
        if self.op == "empty":  # empty only if every member is known absent, which a partial set never says
            return FALSE if actual.present else Outcome(None, open=(self.fact,), alone=(self.fact,))
        wanted = frozenset([self.value]) if self.op == "has" else self.value
        if not wanted.isdisjoint(actual.present):
            return Outcome(True, matched=(self.fact,))
        if wanted <= actual.absent:
            return FALSE
        return Outcome(None, open=(self.fact,), alone=(self.fact,))

    def atoms(self) -> tuple[Atom, ...]:
        return (self,)


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]

    def check(self, facts: Facts) -> Outcome:
        matched: list[str] = []
        open_: list[str] = []
        alone: set[str] | None = None  # a fact settles the whole only if it settles every unknown part
        for item in self.items:
            out = item.check(facts)
            if out.truth is False:
                return FALSE
            matched += out.matched
            if out.truth is None:
                open_ += out.open
                alone = set(out.alone) if alone is None else alone & set(out.alone)
        if open_:
            # An unknown conjunction keeps the facts already true in it: how far the findings go towards it.
            alone_ = tuple(f for f in _unique(open_) if f in alone)
            return Outcome(None, matched=_unique(matched), open=_unique(open_), alone=alone_)
        return Outcome(True, matched=_unique(matched))

    def atoms(self) -> tuple[Atom, ...]:
        return tuple(a for item in self.items for a in item.atoms())


@dataclass(frozen=True, slots=True)
class Any_:
    items: tuple[Condition, ...]

    def check(self, facts: Facts) -> Outcome:
        matched: list[str] = []
        open_: list[str] = []
        alone: list[str] = []
        for item in self.items:
            out = item.check(facts)
            if out.truth:
                matched += out.matched
            elif out.truth is None:
                open_ += out.open
                alone += out.alone
        if matched:
            return Outcome(True, matched=_unique(matched))
        if open_:
            return Outcome(None, open=_unique(open_), alone=_unique(alone))
        return FALSE

    def atoms(self) -> tuple[Atom, ...]:
        return tuple(a for item in self.items for a in item.atoms())


@dataclass(frozen=True, slots=True)
class AtLeast:
    """True when at least `n` of its items are true; unknown while enough items are still unknown."""

    n: int
    items: tuple[Condition, ...]

    def check(self, facts: Facts) -> Outcome:
        matched: list[str] = []
        open_: list[str] = []
        settles: dict[str, int] = {}  # fact -> how many unknown items it would make true on its own
        true = unknown = 0
        for item in self.items:
            out = item.check(facts)
            if out.truth:
                true += 1
                matched += out.matched
            elif out.truth is None:
                unknown += 1
                open_ += out.open
                for fact in out.alone:
                    settles[fact] = settles.get(fact, 0) + 1
        if true >= self.n:
            return Outcome(True, matched=_unique(matched))
        if true + unknown >= self.n:
            alone = tuple(f for f, count in settles.items() if true + count >= self.n)
            return Outcome(None, open=_unique(open_), alone=alone)
        return FALSE

    def atoms(self) -> tuple[Atom, ...]:
        return tuple(a for item in self.items for a in item.atoms())


Condition = Atom | All | Any_ | AtLeast


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
