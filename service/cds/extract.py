"""FHIR R4 resources to a triage request, reporting every resource that could not be used and why.

Unknown stays unknown: a finding no resource speaks for is left out of the request, and a set
finding whose members are only partly reported keeps the rest unknown. Where two records disagree,
the more abnormal one is used, so a conflicting record can never lower the level.

A measurement read against a threshold (body temperature for fever) is combined more cautiously than an
answer: one at or above the threshold counts like an active Condition, whatever was recorded after it
within the age limit, and one below it never supersedes another record, so a later normal reading never
hides a fever. A quantity in a unit the mapping does not name or without a value is not used and leaves
the finding unknown; so is one with a comparator, unless it is `>=` or `>` a value at or above the
threshold (at least that: present).

A partial birthDate whose possible ages fall either side of an age threshold leaves the age unknown and
carries one age for each side (`Straddle`); the service evaluates each and may answer `at_age` one.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.cds.mapping import UCUM, Ages, Entry, Mapping, Token
from service.engine.model import Finding

USABLE_OBSERVATION = frozenset({"final", "amended", "corrected", "preliminary"})
# A record dated after now by more than this is not used: it cannot be the latest truth about the patient,
# and a later-dated normal record would otherwise supersede a red flag recorded today. The allowance is
# for clocks of the EHR and of this service that differ a little.
FUTURE_SKEW = timedelta(minutes=5)
ACTIVE_CONDITION = frozenset({"active", "recurrence", "relapse"})
NOT_CONFIRMED = frozenset({"refuted", "entered-in-error"})
SEXES = frozenset({"male", "female", "other", "unknown"})
_DATE = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2}))?)?")
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
DATE_OF_BIRTH = "Date of birth"
AT_LEAST = frozenset({">=", ">"})  # comparators that make a quantity at least its value


class WrongPatient(Exception):
    """A resource is about another patient than the hook's context: nothing is evaluated. `expression`
    is the FHIRPath of the element that says so (the resource type and field, never its values)."""

    def __init__(self, expression: str):
        super().__init__(expression)
        self.expression = expression


@dataclass(frozen=True)
class Note:
    """A resource the service read but did not use, or used only in part, with the reason (sent back to
    the EHR, never logged)."""

    reference: str
    label: str
    reason: str
    used: bool = False  # read, within the limits the reason gives (a partial birthDate, a first page)


@dataclass
class Gathered:
    """A call's resources, from prefetch or the FHIR server, and notes on Bundle entries not used."""

    patient: dict[str, Any] | None = None
    observations: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class Straddle:
    """A birthDate without a day whose possible ages fall either side of an age threshold of the rules."""

    reference: str  # the Patient, whose note on the birthDate says the age stays unknown
    given: str  # "the year" or "the year and month"
    youngest: int
    oldest: int
    ages: tuple[int, ...]  # one age for each side of each threshold in between, the youngest first


@dataclass
class Extraction:
    request: dict[str, Any]
    used: list[str] = field(default_factory=list)  # references of the resources that set a finding
    notes: list[Note] = field(default_factory=list)  # the gathering's notes first
    straddle: Straddle | None = None  # the age left unknown, and the ages it could be


def at_age(found: Extraction, age: int) -> Extraction:
    """`found` with a straddling age taken as `age`, one of `found.straddle.ages` giving the most urgent
    answer; its note (the ages only, never the birth date) says so and that the exact age could lower it."""
    straddle = found.straddle
    if straddle is None or age not in straddle.ages:
        raise ValueError("at_age: not one of the ages a straddling birthDate allows")
    young, old = straddle.youngest, straddle.oldest
    span = f"{young} or {old}" if old == young + 1 else f"between {young} and {old}"
    reason = (
        f"birthDate gives only {straddle.given}; the age is {span}, and the more urgent answer (at {age}) "
        "is given; the exact age could make it less urgent"
    )
    birth = (straddle.reference, DATE_OF_BIRTH)
    notes = [Note(*birth, reason, used=True) if (n.reference, n.label) == birth else n for n in found.notes]
    request = {**found.request, "patient": {**found.request.get("patient", {}), "age": age}}
    return dataclasses.replace(found, request=request, notes=notes, straddle=None)


@dataclass(frozen=True)
class _Reading:
    entry: Entry
    when: datetime
    value: Any
    reference: str
    holds: bool = False  # never superseded: an active Condition, a measurement at or above its threshold
    weak: bool = False  # never supersedes: a measurement below its threshold


def extract(mapping: Mapping, data: Gathered, *, patient_id: str, now: datetime, max_age: timedelta) -> Extraction:
    """The triage request the resources speak for, with a Note for each one not used (WrongPatient if any is
    about another patient)."""
    out = Extraction(request={"findings": {}}, notes=list(data.notes))
    readings: dict[tuple[str, str | None], list[_Reading]] = {}
    for kind, table, resources in (
        ("Observation", mapping.observations, data.observations),
        ("Condition", mapping.conditions, data.conditions),
    ):
        for index, resource in enumerate(resources):
            entry = _match(table, resource.get("code"))
            ref, label = _reference(resource, kind, index), _label(resource.get("code"), entry.display if entry else "")
            about_patient = _check_subject(resource, patient_id)  # raises for another patient, mapped code or not
            if entry is None:
                found: tuple[datetime, Any] | str = "code not recognised"
            elif not about_patient:
                found = "names no patient; not used"
            elif kind == "Observation":
                found = _observation(entry, resource, now, max_age)
            else:
                found = _condition(entry, resource)
            if isinstance(found, str):
                out.notes.append(Note(ref, label, found))
            else:
                measured = entry.threshold is not None
                holds = kind == "Condition" or (measured and found[1] == "present")
                weak = measured and found[1] == "absent"
                readings.setdefault(entry.slot, []).append(_Reading(entry, *found, ref, holds, weak))
    _settle(readings, out)
    if data.patient is not None:
        _patient(data.patient, patient_id, now, mapping.ages, out)
    return out


def _reference(resource: dict[str, Any], kind: str, index: int) -> str:
    rid = resource.get("id")
    return f"{kind}/{rid}" if isinstance(rid, str) and rid else f"{kind} #{index + 1} (no id)"


def _label(concept: Any, known: str = "") -> str:
    """The EHR's text for a code; else, for a mapped code, the mapping's display; else system|code."""
    if isinstance(concept, dict) and isinstance(concept.get("text"), str) and concept["text"]:
        return concept["text"]
    for system, code, display in _codings(concept):
        return display or known or f"{system}|{code}"
    return known or "(no code)"


def _codings(concept: Any) -> list[tuple[str, str, str]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    out = []
    for coding in concept["coding"]:
        if isinstance(coding, dict) and isinstance(coding.get("system"), str) and isinstance(coding.get("code"), str):
            display = coding.get("display")
            out.append((coding["system"], coding["code"], display if isinstance(display, str) else ""))
    return out


def _match(table: dict[Token, Any], concept: Any) -> Any:
    """What `table` holds for the concept's first coding it knows, or None."""
    return next((table[(system, code)] for system, code, _ in _codings(concept) if (system, code) in table), None)


def _check_subject(resource: dict[str, Any], patient_id: str) -> bool:
    """True when the resource is about the patient; False when it names no patient; raises for another one."""
    subject = resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str) or not ref:
        return False
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == patient_id:
        return True
    kind = resource.get("resourceType")
    raise WrongPatient(f"{kind if kind in ('Observation', 'Condition') else 'Resource'}.subject")


def parse_instant(text: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware datetime (partial dates at their start); None if unusable."""
    if not isinstance(text, str):
        return None
    if "T" in text:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    found = _DATE.fullmatch(text)
    if not found:
        return None
    try:
        return datetime(int(found[1]), int(found[3] or 1), int(found[5] or 1), tzinfo=UTC)
    except ValueError:
        return None


def _observation_time(obs: dict[str, Any]) -> datetime | None:
    """The first usable of effective[x] (a period's end before its start), then issued."""
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    texts = (obs.get("effectiveDateTime"), obs.get("effectiveInstant"), period.get("end"), period.get("start"))
    return next(filter(None, map(parse_instant, (*texts, obs.get("issued")))), None)


def _observation(entry: Entry, obs: dict[str, Any], now: datetime, max_age: timedelta) -> tuple[datetime, Any] | str:
    """When the Observation was made and its value, or why it is not used."""
    status = obs.get("status")
    if not isinstance(status, str) or status not in USABLE_OBSERVATION:  # a list would not even hash
        return f"status {status if isinstance(status, str) else '(none)'}; not used"
    when = _observation_time(obs)
    if when is not None and when < now - max_age:
        return f"recorded more than {max_age.days} days ago; not used"
    if when is not None and when > now + FUTURE_SKEW:
        return "dated in the future; not used"
    if "dataAbsentReason" in obs and not any(k.startswith("value") for k in obs):
        return "recorded without a value; the finding stays unknown"
    value, problem = _read_value(entry, obs)
    return problem or (when or _EPOCH, value)


def _read_value(entry: Entry, obs: dict[str, Any]) -> tuple[Any, str | None]:
    finding = entry.finding
    if entry.threshold is not None:
        return _read_threshold(entry.threshold, obs)
    if finding.kind == "enum":
        value = _match(entry.answers, obs.get("valueCodeableConcept"))
        if value is None:
            return None, "answer not recognised (expected valueCodeableConcept with a mapped coding)"
        return value, None
    if finding.kind in ("tri", "set"):
        flag = obs.get("valueBoolean")
        if not isinstance(flag, bool):
            return None, "expected valueBoolean"
        return ("present" if flag else "absent") if finding.kind == "tri" else flag, None
    number = obs.get("valueInteger")
    quantity = obs.get("valueQuantity")
    if number is None and isinstance(quantity, dict):
        number = quantity.get("value")
        if isinstance(number, float) and number.is_integer():
            number = int(number)
    if not isinstance(number, int) or isinstance(number, bool):
        return None, "expected valueInteger"
    if not (finding.minimum or 0) <= number <= (finding.maximum if finding.maximum is not None else number):
        return None, f"value outside {finding.minimum}-{finding.maximum}; not used"
    return number, None


# A reading outside what a living patient's body temperature can be is a recording error (38.5 entered
# as [degF], 3.85 for 38.5): read against the threshold it would say "no fever", so it is not used.
PLAUSIBLE_BODY_TEMPERATURE = {"Cel": (25.0, 45.0), "[degF]": (77.0, 113.0)}


def _read_threshold(threshold: dict[str, float], obs: dict[str, Any]) -> tuple[Any, str | None]:
    """present at or above the threshold of the quantity's UCUM unit, absent below it; else why not used.

    With a comparator, only `>=` or `>` a value at or above the threshold is read (present: at least that).
    """
    quantity = obs.get("valueQuantity")
    units = " or ".join(threshold)
    problem = f"value not recognised (expected valueQuantity in UCUM {units}); the finding stays unknown"
    if not isinstance(quantity, dict) or quantity.get("system") != UCUM:
        return None, problem
    unit, number = quantity.get("code"), quantity.get("value")
    limit = threshold.get(unit) if isinstance(unit, str) else None
    if limit is None or isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        return None, problem
    low, high = PLAUSIBLE_BODY_TEMPERATURE.get(unit, (-math.inf, math.inf))
    if not low <= number <= high:
        return None, f"value outside {low:g} to {high:g} {unit}, not a possible reading; the finding stays unknown"
    comparator = quantity.get("comparator")
    if comparator is not None and (not isinstance(comparator, str) or comparator not in AT_LEAST or number < limit):
        return None, (
            "value not recognised: with a comparator, only >= or > a value at or above the threshold is read; "
            "the finding stays unknown"
        )
    return ("present" if number >= limit else "absent"), None


def _condition(entry: Entry, cond: dict[str, Any]) -> tuple[datetime, Any] | str:
    """The Condition's value (undated: a current diagnosis), or why it is not used."""
    clinical = {code for _, code, _ in _codings(cond.get("clinicalStatus"))}
    verification = {code for _, code, _ in _codings(cond.get("verificationStatus"))}
    if verification & NOT_CONFIRMED:
        return "refuted or entered in error; not used"
    # A Condition without a clinical status is taken as current: the safer reading of a diagnosis.
    if clinical and not clinical & ACTIVE_CONDITION:
        return "not active; not used"
    return _EPOCH, True if entry.finding.kind == "set" else (entry.value or "present")


def _severity(finding: Finding, value: Any) -> int:
    """Higher is more abnormal; used only to break ties between conflicting records."""
    if finding.kind == "int":
        return int(value)
    if finding.kind == "set":
        return 1 if value else 0
    if value in finding.unknown:
        return -1
    return 0 if value in finding.normal or value == "absent" else 1


def _settle(readings: dict[tuple[str, str | None], list[_Reading]], out: Extraction) -> None:
    """One value per finding (or set member): the newest record, the more abnormal on a tie. A reading that
    holds (active Condition, measurement at or above its threshold) is never superseded; a weak one (below
    its threshold) never supersedes, so it only counts when nothing later than it says otherwise."""
    members: dict[Finding, dict[str, bool]] = {}  # set findings: what each answered member is
    for (path, member), found in readings.items():
        finding = found[0].entry.finding
        latest = max((r.when for r in found if not r.holds and not r.weak), default=None)
        current = [r for r in found if r.holds or (r.weak and (latest is None or r.when >= latest)) or r.when == latest]
        chosen = max(current, key=lambda r: _severity(finding, r.value))
        for reading in found:
            if reading not in current:
                out.notes.append(Note(reading.reference, reading.entry.display, "superseded by a later record"))
            elif reading.value == chosen.value:
                out.used.append(reading.reference)
            else:
                out.notes.append(
                    Note(reading.reference, reading.entry.display, "conflicts with a more abnormal record; not used")
                )
        if member is not None:
            members.setdefault(finding, {})[member] = bool(chosen.value)
        else:
            _set(out.request["findings"], path, chosen.value)
    for finding, known in members.items():
        if len(known) == len(finding.values):
            value: Any = [m for m in finding.values if known[m]]  # every member answered: the complete list
        else:
            value = {
                "present": sorted(m for m in known if known[m]),
                "absent": sorted(m for m in known if not known[m]),
            }
        _set(out.request["findings"], finding.path, value)
    out.used[:] = list(dict.fromkeys(out.used))


def _set(findings: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.removeprefix("findings.").split(".")
    node = findings
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def _patient(patient: dict[str, Any], patient_id: str, now: datetime, ages: Ages | None, out: Extraction) -> None:
    if patient.get("id") not in (None, patient_id):
        raise WrongPatient("Patient.id")
    info: dict[str, Any] = {}
    gender = patient.get("gender")
    if isinstance(gender, str) and gender in SEXES:  # anything else leaves the sex unknown
        info["sex"] = gender
    born = patient.get("birthDate")
    if born is not None and ages is not None:
        reference = f"Patient/{patient_id}"
        age, reason, out.straddle = _age(born, now.date(), ages, reference)
        if age is not None:
            info["age"] = age
        if reason:
            out.notes.append(Note(reference, DATE_OF_BIRTH, reason, used=age is not None))
    if info:
        out.request["patient"] = info


def _age(born: Any, today: date, ages: Ages, reference: str) -> tuple[int | None, str, Straddle | None]:
    """The age a FHIR birthDate (YYYY, YYYY-MM or YYYY-MM-DD) gives today, what the card should say, and
    the ages to evaluate when a threshold separates those it allows.

    A partial date gives an age only when no threshold of the knowledge falls between the youngest and the
    oldest age it allows: the youngest is then on the same side of every threshold as all the others.
    Otherwise the age stays unknown, and the youngest age and each threshold in between (the first age on
    its far side) stand for every side. A year or a month allows two ages at most, a year apart, so that is
    the youngest and the oldest, either side of one threshold.
    """
    parts = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", born) if isinstance(born, str) else None
    if parts is None:
        return None, "birthDate is not a date (YYYY, YYYY-MM or YYYY-MM-DD); the age stays unknown", None
    year, month, day = (int(p) if p else None for p in parts.groups())
    try:
        first = date(year, month or 1, day or 1)
        last = date(year, month or 12, day or calendar.monthrange(year, month or 12)[1])
    except ValueError:
        return None, "birthDate is not a date (YYYY, YYYY-MM or YYYY-MM-DD); the age stays unknown", None
    if first <= today < last:  # born this month or year: by today, never later
        last = today
    youngest, oldest = (today.year - b.year - ((today.month, today.day) < (b.month, b.day)) for b in (last, first))
    if youngest < ages.minimum or oldest > ages.maximum:
        return None, f"birthDate gives an age outside {ages.minimum} to {ages.maximum}; the age stays unknown", None
    if day is not None:
        return youngest, "", None
    given = "the year" if month is None else "the year and month"
    between = [n for n in ages.thresholds if youngest < n <= oldest]
    if between:
        reason = (
            f"birthDate gives only {given}; the age is between {youngest} and {oldest}, either side of "
            f"{' and '.join(map(str, between))}, an age the rules use; the age stays unknown"
        )
        return None, reason, Straddle(reference, given, youngest, oldest, (youngest, *between))
    if youngest == oldest:
        return youngest, f"birthDate gives only {given}; age {youngest} whatever the day", None
    reason = (
        f"birthDate gives only {given}; age taken as {youngest} to {oldest}, which no age threshold of the "
        "rules separates"
    )
    return youngest, reason, None
