"""A rule's condition in plain words, for the clinician pages: the condition as written, read aloud.

Each node is a phrase and the phrases under it ("all of:", then one line per part). A named condition
(`ref`) keeps its name, in words, with its definition under it, so the page shows the same names the
knowledge base uses. Plain Python: no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Path segments that are groupings or abbreviations, not words a clinician would use; the rest read as
# they are, "_" as a space.
_SEGMENT_WORDS = {
    "findings": "",
    "patient": "",
    "history": "",
    "function": "",
    "systemic": "",
    "slr": "straight leg raise",
}


@dataclass(frozen=True)
class Phrase:
    text: str
    parts: tuple[Phrase, ...] = ()


def condition_words(spec: dict[str, Any], derived: dict[str, Any]) -> Phrase:
    """The condition `spec` (as rules.yaml writes it) as a tree of phrases; `derived` names the
    conditions a `ref` may use (findings.yaml `derived`)."""
    if "of" in spec:
        return Phrase(f"at least {spec['at_least']} of:", _each(spec["of"], derived))
    if "all" in spec:
        if not spec["all"]:  # a rule for every answer (the baseline), which other rules' levels overrule
            return Phrase("always: every answer, whatever the findings (a more urgent rule's level overrides it)")
        return Phrase("all of:", _each(spec["all"], derived))
    if "any" in spec:
        return Phrase("any of:", _each(spec["any"], derived))
    if "ref" in spec:
        return Phrase(f"{words(spec['ref'])}, that is", (condition_words(derived[spec["ref"]], derived),))
    return Phrase(_atom(spec))


def _each(items: list[dict[str, Any]], derived: dict[str, Any]) -> tuple[Phrase, ...]:
    return tuple(condition_words(item, derived) for item in items)


def _atom(spec: dict[str, Any]) -> str:
    subject = finding_label(spec["fact"])
    if "is" in spec:
        return f"{subject} is {words(spec['is'])}"
    if "in" in spec:
        return f"{subject} is {alternatives(spec['in'])}"
    if "has" in spec:
        return f"{subject} include {words(spec['has'])}"
    if "has_any" in spec:
        return f"{subject} include {alternatives(spec['has_any'])}"
    if "at_least" in spec:
        return f"{subject} is {spec['at_least']} or more"
    if "below" in spec:
        return f"{subject} is under {spec['below']}"
    if "empty" in spec:
        return f"no {subject} are listed" if spec["empty"] else f"some {subject} are listed"
    if "unknown" in spec:
        return f"{subject} is not known" if spec["unknown"] else f"{subject} is known"
    raise ValueError(f"no words for the condition {sorted(spec)}")  # the loader refuses any other operator


def finding_label(path: str) -> str:
    """`findings.slr.result` -> "straight leg raise result"; `patient.age` -> "age"."""
    segments = (_SEGMENT_WORDS.get(part, part) for part in path.split("."))
    return " ".join(words(part) for part in segments if part)


def words(value: Any) -> str:
    return str(value).replace("_", " ")


def alternatives(values: list[Any]) -> str:
    """["weak", "unable", "pain_limited"] -> "weak, unable or pain limited"."""
    named = [words(v) for v in values]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
