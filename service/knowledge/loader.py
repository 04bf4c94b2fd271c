"""Load and validate the knowledge base. Any problem stops start-up with every message at once."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

from marshmallow import Schema

from service.engine.logic import All, Any_, AtLeast, Atom, Condition
from service.engine.model import (
    Advice,
    Cause,
    Citation,
    Conflict,
    Finding,
    KnowledgeBase,
    Level,
    Referral,
    Rule,
    Scope,
    Urgency,
)
from service.jsoncodec import canonical_json
from service.knowledge.schemas import KNOWLEDGE_SCHEMAS, CoverageFile, shape_problems
from service.knowledge.yamlfile import DataFileError, read_yaml

BUNDLED = Path(__file__).resolve().parent
COVERAGE_FILE = "coverage.yaml"  # optional; read by the coverage report, its shape checked here with the rest
SHA256 = re.compile(r"^[0-9a-f]{64}$")
OPS = {
    "tri": {"is", "in", "unknown"},
    "enum": {"is", "in", "unknown"},
    "set": {"has", "has_any", "empty"},
    "int": {"at_least", "below", "unknown"},
}
# What a tri finding may be (the schema refuses these keys on one): present, absent or unknown.
TRI_FINDING = {"values": ("present", "absent", "unknown"), "unknown": ("unknown",), "normal": ("absent",)}
# Cause weights (policy SP-10): 3 a discriminating sign, 2 a typical finding, 1 a compatible finding or
# risk factor; negative: evidence against, on the same scale.
WEIGHTS = (-3, -2, -1, 1, 2, 3)
AUTHORITIES = ("clinical", "fitness", "service_policy")
# Sources that may justify a level above self-care: the clinical articles and the service's own policy.
LEVEL_AUTHORITIES = ("clinical", "service_policy")


class KnowledgeError(Exception):
    """The knowledge base is invalid; `problems` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid knowledge base:\n  - " + "\n  - ".join(problems))


def load_knowledge(folder: Path | str | None = None) -> KnowledgeBase:
    """The knowledge base in `folder`; without one, the bundled base, parsed once per process."""
    if not folder:
        return _bundled()
    return _Builder(read_docs(Path(folder))).build()


def read_docs(folder: Path) -> dict[str, Any]:
    """The knowledge files in `folder` by name (sources, citations, ...), freshly parsed.

    Shape first, every file (and coverage.yaml, if there): the builder may then rely on keys and types
    being as declared."""
    docs: dict[str, Any] = {}
    problems: list[str] = []
    for name, schema in KNOWLEDGE_SCHEMAS.items():
        docs[name], found = read_checked(folder / f"{name}.yaml", schema)
        problems += found
    if (folder / COVERAGE_FILE).is_file():
        problems += read_checked(folder / COVERAGE_FILE, CoverageFile)[1]
    if problems:
        raise KnowledgeError(problems)
    return docs


def read_checked(path: Path, schema: type[Schema]) -> tuple[Any, list[str]]:
    """A knowledge file's content and every problem with its shape, each as `file: path: message`."""
    try:
        doc = read_yaml(path, path.name)
    except DataFileError as exc:
        return None, exc.problems
    return doc.data, shape_problems(schema(), doc, path.name)


@functools.cache
def _bundled() -> KnowledgeBase:
    # Immutable once built, so the app factory and the OpenAPI example can share it.
    return load_knowledge(BUNDLED)


class _Builder:
    """The KnowledgeBase from shape-checked files, and every problem the schemas cannot see: references
    between files, citation spans inside their sources, and the safety rules."""

    def __init__(self, docs: dict[str, Any]):
        self.docs = docs
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def build(self) -> KnowledgeBase:
        catalog = self.docs["catalog"]
        self.citations = self._citations({s["id"]: s for s in self.docs["sources"]["sources"]})
        self.findings = self._findings()
        self.derived = self.docs["findings"].get("derived", {})
        self.levels = {
            lid: Level(lid, rank, spec["label"], spec["action"], spec["referral"], spec["indicator"])
            for rank, (lid, spec) in enumerate(catalog["levels"].items())
        }
        self.targets, self.tests = dict(catalog["referral_targets"]), dict(catalog["tests"])
        self.urgencies = {uid: Urgency(uid, u["word"], u["priority"]) for uid, u in catalog["urgencies"].items()}
        self.causes = {
            cid: Cause(cid, c["name"], c["about"], self._cite(c["citations"], f"cause {cid}"))
            for cid, c in catalog["causes"].items()
        }
        self.advice = {
            aid: Advice(aid, a["text"], a["up_to"], self._cite(a["citations"], f"advice {aid}"))
            for aid, a in catalog["advice"].items()
        }
        for aid, a in self.advice.items():
            if a.up_to not in self.levels:
                self.problem(f"advice {aid}: unknown level {a.up_to!r}")
        for lid, lv in self.levels.items():
            if lv.referral not in self.targets:
                self.problem(f"level {lid}: unknown referral target {lv.referral!r}")
            if lid not in self.urgencies:  # a level's own referral goes at the level's urgency
                self.problem(f"level {lid}: not an urgency too")
        rules = tuple(self._rule(r) for r in self.docs["rules"]["rules"])
        self._check_rule_set(rules)
        conflicts = tuple(self._conflict(c) for c in self.docs["findings"].get("conflicts", ()))
        scope = self._scope(catalog["scope"]) if "scope" in catalog else None
        incomplete = catalog["incomplete"]
        if incomplete["up_to"] not in self.levels:
            self.problem(f"catalog: incomplete.up_to is not a level: {incomplete['up_to']!r}")
        emergency_tests = tuple(catalog.get("emergency_tests", ()))
        for test in emergency_tests:
            if test not in self.tests:
                self.problem(f"catalog: emergency test {test!r} is not a test")
        if set(catalog["authorities"]) != set(AUTHORITIES):
            self.problem(f"catalog: authorities must describe exactly {', '.join(AUTHORITIES)}")
        if self.problems:
            raise KnowledgeError(self.problems)
        return KnowledgeBase(
            version=str(catalog["version"]),
            sha256=hashlib.sha256(canonical_json(self.docs)).hexdigest(),
            sources=tuple(self.docs["sources"]["sources"]),
            citations=self.citations,
            findings=self.findings,
            levels=self.levels,
            causes=self.causes,
            advice=self.advice,
            rules=rules,
            referral_targets=self.targets,
            tests=self.tests,
            urgencies=self.urgencies,
            conflicts=conflicts,
            scope=scope,
            incomplete=dict(incomplete),
            authorities=dict(catalog["authorities"]),
            emergency_tests=emergency_tests,
            rules_by_id={r.id: r for r in rules},
            derived=dict(self.derived),
        )

    # -- citations ----------------------------------------------------------------------------
    def _citations(self, sources: dict[str, dict]) -> dict[str, Citation]:
        out = {}
        for cid, c in self.docs["citations"]["citations"].items():
            src = sources.get(c["source"])
            if src is None:
                self.problem(f"citation {cid}: unknown source {c['source']!r}")
                continue
            section = next((s for s in src["sections"] if s["id"] == c["section"]), None)
            if section is None:
                self.problem(f"citation {cid}: source {src['id']} has no section {c['section']!r}")
                continue
            paras, n = section["paragraphs"], c["paragraph"]
            if not 1 <= n <= len(paras):
                self.problem(f"citation {cid}: section {section['id']} has no paragraph {n!r}")
                continue
            (p0, p1), start, end = paras[n - 1], c["start"], c["end"]
            if not p0 <= start < end <= p1:
                self.problem(f"citation {cid}: span {start}-{end} is not inside paragraph {n} ({p0}-{p1})")
                continue
            if not SHA256.match(c["sha256"]):
                self.problem(f"citation {cid}: sha256 missing or malformed")
                continue
            if src["authority"] not in AUTHORITIES:
                self.problem(f"source {src['id']}: unknown authority {src['authority']!r}")
            if c.get("urgency") is not None and c["urgency"] not in self.docs["catalog"]["levels"]:
                self.problem(f"citation {cid}: unknown urgency {c['urgency']!r}")
            out[cid] = Citation(
                cid,
                src["id"],
                src["title"],
                src["file"],
                src["sha256"],
                src["kind"],
                src["authority"],
                section["id"],
                section["heading"],
                n,
                start,
                end,
                c["sha256"],
                c.get("urgency"),
            )
        return out

    def _cite(self, ids: list[str], owner: str) -> tuple[Citation, ...]:
        if not ids:
            self.problem(f"{owner}: has no citation")
        for cid in ids:
            if cid not in self.citations:
                self.problem(f"{owner}: unknown citation {cid!r}")
        return tuple(self.citations[cid] for cid in ids if cid in self.citations)

    # -- findings and conditions ----------------------------------------------------------------
    def _findings(self) -> dict[str, Finding]:
        out = {}
        for path, f in self.docs["findings"]["findings"].items():
            if f["kind"] == "tri":
                f = {**f, **TRI_FINDING}
            if not f["question"]:
                self.problem(f"finding {path}: has no question")
            finding = Finding(
                path,
                f["kind"],
                tuple(f.get("values", ())),
                frozenset(f.get("unknown", ())),
                frozenset(f.get("normal", ())),
                f.get("min"),
                f.get("max"),
                f["question"],
                f.get("attribute", False),
            )
            flags = f.get("red_flag", False)
            red = finding.abnormal_values() if flags is True else tuple(flags or ())
            for v in red:
                if v not in finding.abnormal_values():
                    self.problem(f"finding {path}: red flag {v!r} is not an abnormal value")
            out[path] = dataclasses.replace(finding, red_flags=frozenset(red))
        return out

    def _condition(self, spec: dict, owner: str, depth: int = 0) -> Condition:
        # The schema has checked every condition's keys and types; what is left is what they refer to,
        # and nesting: a derived condition may refer to itself, directly or not.
        if depth > 20:
            self.problem(f"{owner}: malformed condition {spec!r}")
            return All(())
        if "of" in spec:
            n, items = spec["at_least"], spec["of"]
            if not 1 <= n <= len(items):
                self.problem(f"{owner}: at_least {n} of {len(items)} conditions can never hold")
            return AtLeast(n, tuple(self._condition(s, owner, depth + 1) for s in items))
        for key, group in (("all", All), ("any", Any_)):
            if key in spec:
                return group(tuple(self._condition(s, owner, depth + 1) for s in spec[key]))
        if "ref" in spec:
            if spec["ref"] not in self.derived:
                self.problem(f"{owner}: unknown derived condition {spec['ref']!r}")
                return All(())
            return self._condition(self.derived[spec["ref"]], f"{owner} ({spec['ref']})", depth + 1)
        return self._atom(spec, owner)

    def _atom(self, spec: dict, owner: str) -> Condition:
        path = spec["fact"]
        finding = self.findings.get(path)
        if finding is None:
            self.problem(f"{owner}: unknown finding {path!r}")
            return All(())
        ops = [k for k in spec if k != "fact"]  # exactly one: the schema has checked
        op, value = ops[0], spec[ops[0]]
        if op not in OPS[finding.kind]:
            self.problem(f"{owner}: {path} ({finding.kind}) cannot be tested with {ops}")
            return All(())
        if op in ("at_least", "below"):
            if not finding.minimum <= value <= finding.maximum:
                self.problem(f"{owner}: {path} bound {value!r} out of range")
            return Atom(path, op, value)
        if op in ("empty", "unknown"):
            if value is not True:
                self.problem(f"{owner}: {path} {op} takes true")
            return Atom(path, op, True)
        wanted = value if op in ("in", "has_any") else [value]
        for v in wanted:
            if v not in finding.values or v in finding.unknown:
                self.problem(f"{owner}: {path} has no value {v!r} to test for")
        return Atom(path, op, frozenset(value) if op in ("in", "has_any") else value)

    # -- rules ----------------------------------------------------------------------------------
    def _rule(self, spec: dict) -> Rule:
        owner = f"rule {spec['id']}"
        then = spec["then"]
        rule = Rule(
            id=spec["id"],
            statement=spec["statement"],
            when=self._condition(spec["when"], owner),
            when_source=spec["when"],
            citations=self._cite(spec["citations"], owner),
            level=then.get("level"),
            causes=tuple(then.get("causes", {}).items()),
            referrals=tuple(
                Referral(r["to"], r["urgency"], tuple(r.get("tests", ()))) for r in then.get("referrals", ())
            ),
            advice=tuple(then.get("advice", ())),
        )
        self._check_rule(rule, owner)
        return rule

    def _check_rule(self, rule: Rule, owner: str) -> None:
        if not rule.statement:
            self.problem(f"{owner}: has no statement")
        if not (rule.level or rule.causes or rule.referrals or rule.advice):
            self.problem(f"{owner}: has no effect")
        for cid, weight in rule.causes:
            if cid not in self.causes:
                self.problem(f"{owner}: unknown cause {cid!r}")
            if weight not in WEIGHTS:  # (the schema refuses a boolean, which would pass for 1)
                self.problem(f"{owner}: cause {cid} weight {weight!r} is not one of {WEIGHTS}")
        for ref in rule.referrals:
            if ref.to not in self.targets or ref.urgency not in self.urgencies:
                self.problem(f"{owner}: unknown referral {ref.to!r}/{ref.urgency!r}")
            for test in ref.tests:
                if test not in self.tests:
                    self.problem(f"{owner}: unknown test {test!r}")
        for aid in rule.advice:
            if aid not in self.advice:
                self.problem(f"{owner}: unknown advice {aid!r}")
        if rule.level is None:
            return
        if rule.level not in self.levels:
            self.problem(f"{owner}: unknown level {rule.level!r}")
            return
        # Safety: a level may only be set by abnormal findings (monotonicity), and a level above
        # self-care needs a clinical source, not fitness material alone.
        for atom in rule.when.atoms():
            if self._tests_normal(atom):
                self.problem(f"{owner}: sets a level from a normal value of {atom.fact}")
        bottom = list(self.levels)[-1]
        if rule.level != bottom and not any(c.authority in LEVEL_AUTHORITIES for c in rule.citations):
            self.problem(f"{owner}: a level above {bottom} needs a clinical source or the service's policy")
        # Policy SP-2: a passage's urgency words map to one level everywhere; a rule citing the passage
        # for a finding never answers below it (the always-true baseline cites its minor-strain clause).
        rank = self.levels[rule.level].rank
        for c in rule.citations:
            # (an unknown urgency is reported with its citation)
            if rule.when.atoms() and c.urgency in self.levels and self.levels[c.urgency].rank < rank:
                self.problem(f"{owner}: cites {c.id}, whose words mean {c.urgency}, but sets {rule.level}")

    def _tests_normal(self, atom: Atom) -> bool:
        """Whether an atom can be true on a normal value (which must never set a level: monotonicity)."""
        finding = self.findings[atom.fact]
        if atom.op == "empty":
            return True
        if atom.op == "below":
            return not finding.attribute
        tested = atom.value if isinstance(atom.value, frozenset) else {atom.value}
        return atom.op in ("is", "in") and bool(tested & (finding.normal | finding.unknown))

    # -- conflicts and scope --------------------------------------------------------------------
    def _conflict(self, spec: dict) -> Conflict:
        owner = f"conflict {spec['id']}"
        when = self._condition(spec["when"], owner)
        unknown = tuple(spec.get("unknown", ()))
        normal_tests = {a.fact for a in when.atoms() if self._tests_normal(a)}
        for path in unknown:
            # Only a normal reading may be set aside, so resolving a conflict can never lower the level.
            if path not in normal_tests:
                self.problem(f"{owner}: {path} is read as unknown but the condition tests no normal value of it")
        if not spec["statement"]:
            self.problem(f"{owner}: has no statement")
        return Conflict(spec["id"], spec["statement"], when, unknown, self._cite(spec["citations"], owner))

    def _scope(self, spec: dict) -> Scope:
        finding = self.findings.get(spec["age"])
        if finding is None or not finding.attribute:
            self.problem(f"scope: age must name an attribute finding, not {spec['age']!r}")
        return Scope(spec["age"], spec["min_age"], dict(spec["notes"]), self._cite(spec["citations"], "scope"))

    def _check_rule_set(self, rules: tuple[Rule, ...]) -> None:
        ids = [r.id for r in rules]
        for rid in {i for i in ids if ids.count(i) > 1}:
            self.problem(f"rule {rid}: id used more than once")
        supported = {cid for r in rules for cid, w in r.causes if w > 0}
        for cid in self.causes:
            if cid not in supported:
                self.problem(f"cause {cid}: no rule can suggest it")
        bottom = list(self.levels)[-1]
        if not any(r.level == bottom and not r.when.atoms() for r in rules):
            self.problem(f"no baseline rule: one rule must always set {bottom}")
