"""The FHIR-to-findings mapping: data (service/knowledge/fhir_mapping.yaml or a site's file), checked at load."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import fields

from service.engine.model import Finding, KnowledgeBase
from service.knowledge.schemas import Mapping as MappingOf
from service.knowledge.schemas import Nested, Str, Strict, shape_problems
from service.knowledge.yamlfile import parse_yaml, yaml_path, yaml_problem

BUNDLED = Path(__file__).resolve().parent.parent / "knowledge" / "fhir_mapping.yaml"
PREFETCH_KEYS = ("patient", "observations", "conditions", "vitals")
# Keys a call can do without: when vital signs cannot be had, the findings they speak for stay unknown and
# the card says so, instead of the call failing with 412 (EHRs registered before the key existed send three).
OPTIONAL_PREFETCH_KEYS = frozenset({"vitals"})
UCUM = "http://unitsofmeasure.org"

Token = tuple[str, str]  # (system, code)
AGE = "patient.age"  # the finding Patient.birthDate speaks for


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
    # tri Observations read from a valueQuantity: UCUM unit code -> the value at or above which it is present
    threshold: dict[str, float] | None = None

    @property
    def slot(self) -> tuple[str, str | None]:
        """What the entry decides: a finding, or one member of a set finding."""
        return (self.finding.path, self.member)


@dataclass(frozen=True)
class Ages:
    """What the knowledge does with an age: the ages it allows, and every threshold of a condition on it."""

    minimum: int
    maximum: int
    # Each n splits the ages into below n and n or over (below, at_least, the intended population's minimum).
    thresholds: tuple[int, ...]


def read_ages(kb: KnowledgeBase) -> Ages | None:
    """The age finding's range and thresholds, read from the rules, conflicts and scope (None: no age finding)."""
    finding = kb.findings.get(AGE)
    if finding is None or finding.minimum is None or finding.maximum is None:
        return None
    found = {
        atom.value
        for item in (*kb.rules, *kb.conflicts)
        for atom in item.when.atoms()
        if atom.fact == AGE and atom.op in ("at_least", "below")
    }
    if kb.scope is not None and kb.scope.age == AGE:
        found.add(kb.scope.min_age)
    return Ages(finding.minimum, finding.maximum, tuple(sorted(found)))


@dataclass(frozen=True)
class Mapping:
    version: str
    sha256: str
    systems: dict[str, str]
    observations: dict[Token, Entry]
    conditions: dict[Token, Entry]
    prefetch: dict[str, str]
    ages: Ages | None  # from the knowledge base, for Patient.birthDate (None: it has no age finding)

    @property
    def own_system(self) -> str:
        return self.systems["triage"]


class Version(Str):
    """A site's own version label: `3` or `2026.12` unquoted read as numbers, so numbers are taken too."""

    default_error_messages = {"invalid": "must be a string or a number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class Number(fields.Field):
    """A number (int or float), never a boolean or a string."""

    default_error_messages = {"invalid": "must be a number", "null": "must not be empty (null)"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return float(value)


class _ObservationEntry(Strict):
    display = Str(required=True)
    finding = Str(required=True)
    member = Str()
    answers = MappingOf(Str())  # coding (alias|code) -> value of the finding
    threshold = MappingOf(Number())  # UCUM unit code -> value at or above which the finding is present


class _ConditionEntry(Strict):
    display = Str(required=True)
    finding = Str(required=True)
    member = Str()
    value = Str()


class _Prefetch(Strict):
    patient = Str(required=True)
    observations = Str(required=True)


class MappingFile(Strict):
    """The shape of a mapping file; what the codes, findings and values mean is checked after it."""

    version = Version()
    systems = MappingOf(Str(), required=True)  # alias -> code system URL
    prefetch = Nested(_Prefetch, required=True)
    observations = MappingOf(Nested(_ObservationEntry), allow_none=True)  # alias|code -> entry
    conditions = MappingOf(Nested(_ConditionEntry), allow_none=True)


def load_mapping(kb: KnowledgeBase, path: str | Path | None = None) -> Mapping:
    """Load and check a mapping file against the knowledge base's findings; MappingError lists every problem."""
    file = Path(path or BUNDLED)
    name = str(path) if path else BUNDLED.name  # each problem names the file
    try:
        raw_bytes = file.read_bytes()
        doc = parse_yaml(raw_bytes)
    except OSError as exc:
        raise MappingError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"invalid FHIR mapping:\n  {name}: {yaml_problem(exc)}") from None
    shape = shape_problems(MappingFile(), doc, name)
    if shape:
        raise MappingError("invalid FHIR mapping:\n  " + "\n  ".join(shape))
    raw = doc.data
    problems: list[str] = []
    systems = raw["systems"]
    if "triage" not in systems:
        problems.append("systems must name the service's own code system as 'triage'")
    observations = _entries(raw.get("observations") or {}, "observations", systems, kb, problems)
    conditions = _entries(raw.get("conditions") or {}, "conditions", systems, kb, problems)
    prefetch = dict(raw["prefetch"])
    if problems:
        raise MappingError("invalid FHIR mapping:\n  " + "\n  ".join(f"{name}: {p}" for p in problems))
    prefetch["conditions"] = _conditions_query(conditions)
    prefetch["vitals"] = _vitals_query(observations)
    return Mapping(
        version=str(raw.get("version", "")),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        systems=dict(systems),
        observations=observations,
        conditions=conditions,
        prefetch=prefetch,
        ages=read_ages(kb),
    )


def _conditions_query(conditions: dict[Token, Entry]) -> str:
    codes = ",".join(f"{system}|{code}" for system, code in conditions)
    return "Condition?patient={{context.patientId}}" + (f"&code={codes}" if codes else "")


def _vitals_query(observations: dict[Token, Entry]) -> str:
    """Vital signs under a key of their own, so that a day of them cannot push exam findings off the first page
    of the exam query; only the codes read with a threshold (body temperature), newest first."""
    codes = ",".join(f"{system}|{code}" for (system, code), entry in observations.items() if entry.threshold)
    return (
        "Observation?patient={{context.patientId}}&category=vital-signs"
        + (f"&code={codes}" if codes else "")
        + "&_sort=-date&_count=100"
    )


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
    for key, spec in raw.items():  # shapes and types already checked (MappingFile)
        where = yaml_path((section, key))
        token = _token(key, systems, where, problems)
        finding = kb.findings.get(spec["finding"])
        if finding is None:
            problems.append(f"{where}: unknown finding {spec['finding']!r}")
        if finding is None or token is None:
            continue
        if not spec["display"]:
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
        threshold = spec.get("threshold")
        if threshold is not None:
            if finding.kind != "tri":
                problems.append(f"{where}: threshold is only for yes/no findings (kind tri)")
            if not threshold:
                problems.append(f"{where}: threshold needs at least one UCUM unit (unit: value)")
            for unit, limit in threshold.items():
                if not unit or not math.isfinite(limit):
                    problems.append(f"{where}.threshold: threshold for {unit!r} must be a finite number")
        value = spec.get("value")
        if section == "conditions":
            if finding.kind == "int":
                problems.append(f"{where}: a Condition cannot give a number")
            if finding.kind == "enum" and (value not in finding.values or value in finding.normal):
                problems.append(f"{where}: value must be an abnormal value of {finding.path}")
            if finding.kind != "enum" and value is not None:
                problems.append(f"{where}: value is only for enum findings")
        entries[token] = Entry(token, spec["display"], finding, member, answers, value, threshold)
    return entries
