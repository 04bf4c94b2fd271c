"""The loaded, validated knowledge base: immutable data the evaluator reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.engine.logic import Condition

# A citation as answers show it: its catalog id, then its locator (with the source's title and the section's
# heading, so it reads without another call), in this order.
LOCATOR = (
    "id",
    "source",
    "title",
    "file",
    "kind",
    "authority",
    "section",
    "heading",
    "paragraph",
    "start",
    "end",
    "sha256",
)


@dataclass(frozen=True)
class Citation:
    id: str  # the catalog key in citations.yaml, e.g. 000.seek.ces_bladder_bowel
    source: str
    title: str  # the source's title (the project's own description, sources.yaml)
    file: str
    source_sha256: str
    kind: str
    authority: str  # clinical | fitness | service_policy
    section: str
    heading: str | None
    paragraph: int
    start: int
    end: int
    sha256: str
    urgency: str | None = None  # the level the passage's own urgency words map to (policy SP-2), if any

    def locator(self) -> dict[str, Any]:
        """Where the passage is, as every answer cites it."""
        return {name: getattr(self, name) for name in LOCATOR}


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str  # tri | enum | set | int
    values: tuple[Any, ...] = ()
    unknown: frozenset[Any] = frozenset()
    normal: frozenset[Any] = frozenset()
    minimum: int | None = None
    maximum: int | None = None
    question: str = ""
    attribute: bool = False  # a patient attribute (age): no value is normal or abnormal
    red_flags: frozenset[Any] = frozenset()  # values (members of a set) that are red flags on their own

    def abnormal_values(self) -> tuple[Any, ...]:
        return tuple(v for v in self.values if v not in self.normal and v not in self.unknown)


@dataclass(frozen=True)
class Referral:
    to: str
    urgency: str
    tests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    statement: str
    when: Condition
    when_source: Any  # the condition as written, for documentation
    citations: tuple[Citation, ...]
    level: str | None = None
    causes: tuple[tuple[str, int], ...] = ()
    referrals: tuple[Referral, ...] = ()
    advice: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conflict:
    """Findings that contradict each other: the normal-valued ones in `unknown` are then read as unknown,
    so the level is never taken from the less urgent reading (policy SP-3)."""

    id: str
    statement: str
    when: Condition
    unknown: tuple[str, ...]
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class Scope:
    """The intended population, and the note an answer carries for a patient in it, outside it, or of unknown age."""

    age: str  # the finding holding the patient's age
    min_age: int
    notes: dict[str, str]  # in | out | unknown -> note
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class Level:
    id: str
    rank: int  # 0 = most urgent
    label: str
    action: str
    referral: str
    indicator: str  # a CDS card's: critical, warning or info


@dataclass(frozen=True)
class Urgency:
    id: str
    word: str  # as a card says it: "now", "today", ...
    priority: str  # FHIR ServiceRequest.priority


@dataclass(frozen=True)
class Cause:
    id: str
    name: str
    about: str
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class Advice:
    id: str
    text: str
    up_to: str
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class KnowledgeBase:
    version: str
    sha256: str
    sources: tuple[dict[str, Any], ...]
    citations: dict[str, Citation]
    findings: dict[str, Finding]
    levels: dict[str, Level]
    causes: dict[str, Cause]
    advice: dict[str, Advice]
    rules: tuple[Rule, ...]
    referral_targets: dict[str, str]  # id -> name, in catalog order
    tests: dict[str, str]  # id -> name, in catalog order
    urgencies: dict[str, Urgency]  # most urgent first
    conflicts: tuple[Conflict, ...] = ()
    scope: Scope | None = None
    incomplete: dict[str, str] = field(
        default_factory=dict
    )  # label, action and up_to: an answer with no red flag asked
    authorities: dict[str, str] = field(default_factory=dict)  # authority -> what it means
    emergency_tests: tuple[str, ...] = ()  # tests an emergency department arranges itself (policy SP-9)
    rules_by_id: dict[str, Rule] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)  # named conditions as written (the rule pages read them)
