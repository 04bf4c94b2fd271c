"""The FHIR-to-findings mapping: data (service/knowledge/fhir_mapping.yaml or a site's file), checked at load."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from service.engine.model import Finding, KnowledgeBase
from service.knowledge.yamlfile import load_yaml

BUNDLED = Path(__file__).resolve().parent.parent / "knowledge" / "fhir_mapping.yaml"
PREFETCH_KEYS = ("patient", "observations", "conditions")

Token = tuple[str, str]  # (system, code)


class MappingError(ValueError):
    """The mapping file is unusable; the message lists every problem."""


@dataclass(frozen=True)
class Entry:
    """One code: which finding it sets and how its value is read."""

    token: Token
    display: str
    finding: Finding
    member: str | None = None  # for set findings: the member this code answers for
    answers: dict[Token, str] = field(default_factory=dict)  # enum Observations: coding -> value
    value: str | None = None  # enum Conditions: the value a present Condition means

    @property
    def slot(self) -> tuple[str, str | None]:
        """What the entry decides: a finding, or one member of a set finding."""
        return (self.finding.path, self.member)


@dataclass(frozen=True)
class Mapping:
    version: str
    sha256: str
    systems: dict[str, str]
    observations: dict[Token, Entry]
    conditions: dict[Token, Entry]
    prefetch: dict[str, str]

    @property
    def own_system(self) -> str:
        return self.systems["triage"]


def load_mapping(kb: KnowledgeBase, path: str | Path | None = None) -> Mapping:
    """Load and check a mapping file against the knowledge base's findings."""
    raw_bytes = Path(path or BUNDLED).read_bytes()
    try:
        raw = load_yaml(raw_bytes)
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping file is not valid YAML: {exc}") from exc
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise MappingError("mapping file must be a YAML mapping")
    _expect_keys(raw, {"version", "systems", "prefetch", "observations", "conditions"}, "mapping", problems)
    systems = raw.get("systems") or {}
    if not isinstance(systems, dict) or "triage" not in systems:
        problems.append("systems must name the service's own code system as 'triage'")
        systems = {}
    observations = _entries(raw.get("observations") or {}, "observations", systems, kb, problems)
    conditions = _entries(raw.get("conditions") or {}, "conditions", systems, kb, problems)
    prefetch = dict(raw.get("prefetch") or {})
    for key in ("patient", "observations"):
        if not isinstance(prefetch.get(key), str):
            problems.append(f"prefetch.{key}: a FHIR query template is required")
    _expect_keys(prefetch, {"patient", "observations"}, "prefetch", problems)
    if problems:
        raise MappingError("invalid FHIR mapping:\n  " + "\n  ".join(problems))
    prefetch["conditions"] = _conditions_query(conditions)
    return Mapping(
        version=str(raw.get("version", "")),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        systems={str(k): str(v) for k, v in systems.items()},
        observations=observations,
        conditions=conditions,
        prefetch=prefetch,
    )


def _conditions_query(conditions: dict[Token, Entry]) -> str:
    codes = ",".join(f"{system}|{code}" for system, code in conditions)
    return "Condition?patient={{context.patientId}}" + (f"&code={codes}" if codes else "")


def _expect_keys(node: dict[str, Any], allowed: set[str], where: str, problems: list[str]) -> None:
    for key in node:
        if key not in allowed:
            problems.append(f"{where}: unknown key {key!r}")


def _token(text: Any, systems: dict[str, str], where: str, problems: list[str]) -> Token | None:
    alias, sep, code = str(text).partition("|")
    if not sep or not code:
        problems.append(f"{where}: write codes as system|code, got {text!r}")
        return None
    if alias not in systems:
        problems.append(f"{where}: unknown system alias {alias!r}")
        return None
    return (systems[alias], code)


def _entries(
    raw: dict[str, Any], section: str, systems: dict[str, str], kb: KnowledgeBase, problems: list[str]
) -> dict[Token, Entry]:
    entries: dict[Token, Entry] = {}
    if not isinstance(raw, dict):
        problems.append(f"{section}: must map system|code to an entry")
        return entries
    for key, spec in raw.items():
        where = f"{section}.{key}"
        token = _token(key, systems, where, problems)
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        allowed = {"display", "finding", "member", "answers" if section == "observations" else "value"}
        _expect_keys(spec, allowed, where, problems)
        entry = _entry(token, spec, section, where, systems, kb, problems)
        if token and entry:
            entries[token] = entry
    return entries


def _entry(
    token: Token | None,
    spec: dict[str, Any],
    section: str,
    where: str,
    systems: dict[str, str],
    kb: KnowledgeBase,
    problems: list[str],
) -> Entry | None:
    finding = kb.findings.get(spec.get("finding", ""))
    if finding is None:
        problems.append(f"{where}: unknown finding {spec.get('finding')!r}")
        return None
    if not token:
        return None
    display = str(spec.get("display") or "")
    if not display:
        problems.append(f"{where}: display is required")
    member = spec.get("member")
    if finding.kind == "set":
        if member not in finding.values:
            problems.append(f"{where}: member must be one of {list(finding.values)}")
    elif member is not None:
        problems.append(f"{where}: member is only for set findings")
    answers: dict[Token, str] = {}
    if section == "observations" and finding.kind == "enum":
        for answer, value in (spec.get("answers") or {}).items():
            answer_token = _token(answer, systems, f"{where}.answers", problems)
            if value not in finding.values:
                problems.append(f"{where}.answers: {value!r} is not a value of {finding.path}")
            elif answer_token:
                answers[answer_token] = value
        if not answers:
            problems.append(f"{where}: an enum finding needs answers (coding -> value)")
    elif spec.get("answers"):
        problems.append(f"{where}: answers are only for enum findings read from Observations")
    value = spec.get("value")
    if section == "conditions":
        if finding.kind == "int":
            problems.append(f"{where}: a Condition cannot give a number")
        if finding.kind == "enum" and (value not in finding.values or value in finding.normal):
            problems.append(f"{where}: value must be an abnormal value of {finding.path}")
        if finding.kind != "enum" and value is not None:
            problems.append(f"{where}: value is only for enum findings")
    return Entry(token, display, finding, member, answers, value)
