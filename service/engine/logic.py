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
    matched: tuple[str, ...] = ()  # facts that made a true condition true
    open: tuple[str, ...] = ()  # unknown facts that could still make it true


TRUE = Outcome(True)
FALSE = Outcome(False)


@dataclass(frozen=True, slots=True)
class PartialSet:
    """A set finding known only in part (from FHIR, one member at a time): members not listed are unknown."""

    present: frozenset
    absent: frozenset


@dataclass(frozen=True, slots=True)
class Atom:
    fact: str
    op: str  # is | in | has | has_any | at_least
    value: Any

    def check(self, facts: Facts) -> Outcome:
        actual = facts.get(self.fact)
        if actual is None:
            return Outcome(None, open=(self.fact,))
        op, value = self.op, self.value
        if isinstance(actual, PartialSet):
            return self._check_partial(actual)
        if op == "is":
            hit = actual == value
        elif op == "in":
            hit = actual in value
        elif op == "has":
            hit = value in actual
        elif op == "has_any":
            hit = not value.isdisjoint(actual)
        elif op == "at_least":
            hit = actual >= value
        else:  # the loader only builds the ops above
            raise ValueError(f"unknown operator {op!r}")
        return Outcome(True, matched=(self.fact,)) if hit else FALSE

    def _check_partial(self, actual: PartialSet) -> Outcome:
        wanted = frozenset([self.value]) if self.op == "has" else self.value
        if not wanted.isdisjoint(actual.present):
            return Outcome(True, matched=(self.fact,))
        if wanted <= actual.absent:
            return FALSE
        return Outcome(None, open=(self.fact,))

    def atoms(self) -> tuple[Atom, ...]:
        return (self,)


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]

    def check(self, facts: Facts) -> Outcome:
        matched: list[str] = []
        open_: list[str] = []
        for item in self.items:
            out = item.check(facts)
            if out.truth is False:
                return FALSE
            matched += out.matched
            open_ += out.open
        if open_:
            return Outcome(None, open=_unique(open_))
        return Outcome(True, matched=_unique(matched))

    def atoms(self) -> tuple[Atom, ...]:
        return tuple(a for item in self.items for a in item.atoms())


@dataclass(frozen=True, slots=True)
class Any_:
    items: tuple[Condition, ...]

    def check(self, facts: Facts) -> Outcome:
        matched: list[str] = []
        open_: list[str] = []
        for item in self.items:
            out = item.check(facts)
            if out.truth:
                matched += out.matched
            elif out.truth is None:
                open_ += out.open
        if matched:
            return Outcome(True, matched=_unique(matched))
        if open_:
            return Outcome(None, open=_unique(open_))
        return FALSE

    def atoms(self) -> tuple[Atom, ...]:
        return tuple(a for item in self.items for a in item.atoms())


Condition = Atom | All | Any_


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
