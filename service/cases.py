"""Triage a file of cases (one POST /v1/triage body per line) and compare two knowledge bases on it.

Used by `python -m service evaluate` (service/cli.py). Plain Python, no Flask: each line is parsed by
the service's strict JSON parser and validated by the request schema exactly as the API does, then
evaluated. A line is read, answered and written before the next is read, so memory stays flat
however long the file; a bad line becomes an error record with its line number and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from schemas.triage import TriageRequest
from service.engine import evaluate
from service.engine.model import KnowledgeBase
from service.jsoncodec import InvalidJSON, parse_strict_json

SCHEMA = TriageRequest()


@dataclass(frozen=True)
class CaseResult:
    """One line's result: its answer, or why it has none (never the line's content)."""

    line: int
    request: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None
    error: str | None = None
    fields: dict[str, Any] | None = None  # marshmallow's messages by field, for a schema error


def triage_lines(kb: KnowledgeBase, lines: Iterable[bytes]) -> Iterator[CaseResult]:
    """Each non-blank line's outcome, in order, numbered from 1 as an editor numbers them."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            request = SCHEMA.load(parse_strict_json(raw))
        except InvalidJSON as exc:
            yield CaseResult(number, error=f"invalid JSON: {exc.reason}")
            continue
        except ValidationError as exc:
            yield CaseResult(number, error="does not match the request schema", fields=exc.messages)
            continue
        yield CaseResult(number, request, evaluate(kb, request))


@dataclass(frozen=True)
class Change:
    """How one case's answer differs between two knowledge bases, and the rules responsible."""

    line: int
    level: tuple[str, str]
    less_urgent: bool
    # causes, referrals and rules: (added, removed); a rule added fired with the other knowledge only
    lists: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

    def describe(self) -> str:
        parts = []
        if self.level[0] != self.level[1]:
            parts.append(f"level {self.level[0]} -> {self.level[1]}{' (LESS URGENT)' if self.less_urgent else ''}")
        for name, (added, removed) in self.lists.items():
            if added or removed:
                parts.append(f"{name} " + " ".join([*(f"+{x}" for x in added), *(f"-{x}" for x in removed)]))
        return f"line {self.line}: " + "; ".join(parts)

    def as_record(self) -> dict[str, Any]:
        lists = {
            name: {"added": list(added), "removed": list(removed)} for name, (added, removed) in self.lists.items()
        }
        return {"level": list(self.level), "less_urgent": self.less_urgent, **lists}


def compare(line: int, ours: dict[str, Any], theirs: dict[str, Any], kb: KnowledgeBase) -> Change | None:
    """The change from `ours` to `theirs` in level, causes or referrals; None if there is none."""
    level = (ours["triage"]["level"], theirs["triage"]["level"])
    causes = _ids(ours["causes"], "id"), _ids(theirs["causes"], "id")
    referrals = _referrals(ours), _referrals(theirs)
    if level[0] == level[1] and causes[0] == causes[1] and referrals[0] == referrals[1]:
        return None
    rules = _ids(ours["trace"], "rule"), _ids(theirs["trace"], "rule")
    rank = {lv.id: lv.rank for lv in kb.levels.values()}  # 0 is the most urgent
    lists = {
        name: (tuple(x for x in new if x not in old), tuple(x for x in old if x not in new))  # added, removed
        for name, (old, new) in {"causes": causes, "referrals": referrals, "rules": rules}.items()
    }
    return Change(line, level, rank.get(level[1], len(rank)) > rank.get(level[0], len(rank)), lists)


@dataclass
class Tally:
    cases: int = 0
    bad_lines: int = 0
    changed: int = 0
    less_urgent: int = 0  # a count, not the lines: each is printed as it is found, and memory stays flat


def _ids(items: list[dict[str, Any]], key: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item[key] for item in items))


def _referrals(answer: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f"{r['to']} ({r['urgency']})" for r in answer["referrals"])
