"""Load and validate the knowledge base. Any problem stops start-up with every message at once."""

from __future__ import annotations

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
FILES = ("sources", "citations", "findings", "catalog", "rules")
COVERAGE_FILE = "coverage.yaml"  # optional; read by the coverage report, its shape checked here with the rest
SHA256 = re.compile(r"^[0-9a-f]{64}$")
OPS = {
    "tri": {"is", "in", "unknown"},
    "enum": {"is", "in", "unknown"},
    "set": {"has", "has_any", "empty"},
    "int": {"at_least", "below", "unknown"},
}
TRI_VALUES = ("present", "absent", "unknown")
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
    folder = Path(folder)
    docs: dict[str, Any] = {}
    problems: list[str] = []
    for name in FILES:
        docs[name], found = read_checked(folder / f"{name}.yaml", KNOWLEDGE_SCHEMAS[name])
        problems += found
    if (folder / COVERAGE_FILE).is_file():
        problems += read_checked(folder / COVERAGE_FILE, CoverageFile)[1]
    # Shape first, every file: the builder below may then rely on keys and types being as declared.
    if problems:
        raise KnowledgeError(problems)
    return _Builder(docs).build()


def read_checked(path: Path, schema: type[Schema]) -> tuple[Any, list[str]]:
    """A knowledge file's content and every problem with its shape, each as `file: path: message`."""
    try:
        doc = read_yaml(path, path.name)
    except DataFileError as exc:
        return None, exc.problems
    return doc.data, shape_problems(schema(), doc, path.name)


def _read_yaml(path: Path) -> Any:
    """One knowledge file (sources, citations, ...), its shape checked: bench/engine.py builds on these."""
    data, problems = read_checked(path, KNOWLEDGE_SCHEMAS[path.stem])
    if problems:
        raise KnowledgeError(problems)
    return data


@functools.cache
def _bundled() -> KnowledgeBase:
    # Immutable once built, so the app factory and the OpenAPI example can share it.
    return load_knowledge(BUNDLED)


def canonical_hash(docs: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(docs)).hexdigest()


class _Builder:
    def __init__(self, docs: dict[str, Any]):
        self.docs = docs
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def build(self) -> KnowledgeBase:
        catalog = self.docs["catalog"]
        sources = {s["id"]: s for s in self.docs["sources"]["sources"]}
        citations = self._citations(sources)
        findings = self._findings()
        self.derived = self.docs["findings"].get("derived", {})
        self.findings = findings
        levels = {
            lid: Level(lid, rank, spec["label"], spec["action"], spec["referral"], spec["indicator"])
            for rank, (lid, spec) in enumerate(catalog["levels"].items())
        }
        self.levels, self.targets, self.tests = levels, dict(catalog["referral_targets"]), dict(catalog["tests"])
        self.urgencies = {uid: Urgency(uid, u["word"], u["priority"]) for uid, u in catalog["urgencies"].items()}
        causes = {
            cid: Cause(cid, c["name"], c["about"], self._cite(citations, c["citations"], f"cause {cid}"))
            for cid, c in catalog["causes"].items()
        }
        advice = {
            aid: Advice(aid, a["text"], a["up_to"], self._cite(citations, a["citations"], f"advice {aid}"))
            for aid, a in catalog["advice"].items()
        }
        for aid, a in advice.items():
            if a.up_to not in levels:
                self.problem(f"advice {aid}: unknown level {a.up_to!r}")
        for lid, lv in levels.items():
            if lv.referral not in self.targets:
                self.problem(f"level {lid}: unknown referral target {lv.referral!r}")
            if lid not in self.urgencies:  # a level's own referral goes at the level's urgency
                self.problem(f"level {lid}: not an urgency too")
        self.causes, self.advice = causes, advice
        rules = tuple(self._rule(r, citations) for r in self.docs["rules"]["rules"])
        self._check_rule_set(rules)
        conflicts = tuple(self._conflict(c, citations) for c in self.docs["findings"].get("conflicts", ()))
        scope = self._scope(catalog.get("scope") or {}, citations)
        incomplete = catalog["incomplete"]
        if incomplete["up_to"] not in levels:
            self.problem(f"catalog: incomplete.up_to is not a level: {incomplete['up_to']!r}")
        emergency_tests = tuple(catalog.get("emergency_tests") or ())
        for test in emergency_tests:
            if test not in self.tests:
                self.problem(f"catalog: emergency test {test!r} is not a test")
        authorities = catalog.get("authorities") or {}
        if set(authorities) != set(AUTHORITIES):
            self.problem(f"catalog: authorities must describe exactly {', '.join(AUTHORITIES)}")
        if self.problems:
            raise KnowledgeError(self.problems)
        return KnowledgeBase(
            version=str(catalog["version"]),
            sha256=canonical_hash(self.docs),
            sources=tuple(self.docs["sources"]["sources"]),
            citations=citations,
            findings=findings,
            levels=levels,
            causes=causes,
            advice=advice,
            rules=rules,
            referral_targets=self.targets,
            tests=self.tests,
            urgencies=self.urgencies,
            conflicts=conflicts,
            scope=scope,
            incomplete=dict(incomplete),
            authorities=dict(authorities),
            emergency_tests=emergency_tests,
            rules_by_id={r.id: r for r in rules},
        )

    # -- citations ----------------------------------------------------------------------------
    def _citations(self, sources: dict[str, dict]) -> dict[str, Citation]:
        out = {}
        for cid, c in self.docs["citations"]["citations"].items():
            src = sources.get(c.get("source"))
            if src is None:
                self.problem(f"citation {cid}: unknown source {c.get('source')!r}")
                continue
            section = next((s for s in src["sections"] if s["id"] == c.get("section")), None)
            if section is None:
                self.problem(f"citation {cid}: source {src['id']} has no section {c.get('section')!r}")
                continue
            paras = section["paragraphs"]
            n = c.get("paragraph")
            if not isinstance(n, int) or not 1 <= n <= len(paras):
                self.problem(f"citation {cid}: section {section['id']} has no paragraph {n!r}")
                continue
            p0, p1 = paras[n - 1]
            start, end, digest = c.get("start"), c.get("end"), c.get("sha256")
            if not (isinstance(start, int) and isinstance(end, int) and p0 <= start < end <= p1):
                self.problem(f"citation {cid}: span {start}-{end} is not inside paragraph {n} ({p0}-{p1})")
                continue
            if not (isinstance(digest, str) and SHA256.match(digest)):
                self.problem(f"citation {cid}: sha256 missing or malformed")
                continue
            if src["authority"] not in AUTHORITIES:
                self.problem(f"source {src['id']}: unknown authority {src['authority']!r}")
            if c.get("urgency") is not None and c["urgency"] not in self.docs["catalog"]["levels"]:
                self.problem(f"citation {cid}: unknown urgency {c['urgency']!r}")
            out[cid] = Citation(
                cid,
                src["id"],
                src["file"],
                src["sha256"],
                src["kind"],
                src["authority"],
                section["id"],
                section["heading"],
                n,
                start,
                end,
                digest,
                c.get("urgency"),
            )
        return out

    def _cite(self, citations: dict[str, Citation], ids: list[str], owner: str) -> tuple[Citation, ...]:
        if not ids:
            self.problem(f"{owner}: has no citation")
        found = []
        for cid in ids or ():
            if cid in citations:
                found.append(citations[cid])
            else:
                self.problem(f"{owner}: unknown citation {cid!r}")
        return tuple(found)

    # -- findings and conditions ----------------------------------------------------------------
    def _findings(self) -> dict[str, Finding]:
        out = {}
        for path, f in self.docs["findings"]["findings"].items():
            kind = f["kind"]
            values = TRI_VALUES if kind == "tri" else tuple(f.get("values", ()))
            unknown = {"unknown"} if kind == "tri" else set(f.get("unknown", ()))
            normal = {"absent"} if kind == "tri" else set(f.get("normal", ()))
            if not f["question"]:  # the schema has checked the kind and which keys it takes
                self.problem(f"finding {path}: has no question")
            attribute = bool(f.get("attribute", False))
            finding = Finding(
                path,
                kind,
                values,
                frozenset(unknown),
                frozenset(normal),
                f.get("min"),
                f.get("max"),
                f.get("question", ""),
                attribute,
            )
            flags = f.get("red_flag", False)
            red = finding.abnormal_values() if flags is True else tuple(flags or ())
            for v in red:
                if v not in finding.abnormal_values():
                    self.problem(f"finding {path}: red flag {v!r} is not an abnormal value")
            out[path] = Finding(**{**vars(finding), "red_flags": frozenset(red)})
        return out

    def _condition(self, spec: Any, owner: str, depth: int = 0) -> Condition:
        if depth > 20 or not isinstance(spec, dict) or len(spec) == 0:
            self.problem(f"{owner}: malformed condition {spec!r}")
            return All(())
        if "of" in spec and "fact" not in spec:  # the schema has checked each condition's keys and types
            n, items = spec["at_least"], spec["of"]
            if not 1 <= n <= len(items):
                self.problem(f"{owner}: at_least {n} of {len(items)} conditions can never hold")
            return AtLeast(n, tuple(self._condition(s, owner, depth + 1) for s in items))
        if "all" in spec or "any" in spec:
            key = "all" if "all" in spec else "any"
            items = tuple(self._condition(s, owner, depth + 1) for s in spec[key])
            return All(items) if key == "all" else Any_(items)
        if "ref" in spec:
            if spec["ref"] not in self.derived:
                self.problem(f"{owner}: unknown derived condition {spec['ref']!r}")
                return All(())
            return self._condition(self.derived[spec["ref"]], f"{owner} ({spec['ref']})", depth + 1)
        return self._atom(spec, owner)

    def _atom(self, spec: dict, owner: str) -> Condition:
        path = spec.get("fact")
        finding = self.findings.get(path)
        ops = [k for k in spec if k != "fact"]
        if finding is None:
            self.problem(f"{owner}: unknown finding {path!r}")
            return All(())
        if len(ops) != 1 or ops[0] not in OPS[finding.kind]:
            self.problem(f"{owner}: {path} ({finding.kind}) cannot be tested with {ops}")
            return All(())
        op, value = ops[0], spec[ops[0]]
        if op in ("at_least", "below"):
            if isinstance(value, bool) or not isinstance(value, int) or not finding.minimum <= value <= finding.maximum:
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
        if op in ("in", "has_any"):
            value = frozenset(value)
        return Atom(path, op, value)

    # -- rules ----------------------------------------------------------------------------------
    def _rule(self, spec: dict, citations: dict[str, Citation]) -> Rule:
        rid = spec.get("id", "?")
        owner = f"rule {rid}"
        then = spec.get("then") or {}
        when = self._condition(spec.get("when"), owner)
        rule = Rule(
            id=rid,
            statement=spec.get("statement", ""),
            when=when,
            when_source=spec.get("when"),
            citations=self._cite(citations, spec.get("citations"), owner),
            level=then.get("level"),
            causes=tuple((then.get("causes") or {}).items()),
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
            if weight not in WEIGHTS or isinstance(weight, bool):
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
        rank = list(self.levels).index(rule.level)
        for c in rule.citations:
            # (an unknown urgency is reported with its citation)
            if rule.when.atoms() and c.urgency in self.levels and list(self.levels).index(c.urgency) < rank:
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
    def _conflict(self, spec: dict, citations: dict[str, Citation]) -> Conflict:
        cid = spec.get("id", "?")
        owner = f"conflict {cid}"
        when = self._condition(spec.get("when"), owner)
        unknown = tuple(spec.get("unknown") or ())
        normal_tests = {a.fact for a in when.atoms() if self._tests_normal(a)}
        for path in unknown:
            # Only a normal reading may be set aside, so resolving a conflict can never lower the level.
            if path not in normal_tests:
                self.problem(f"{owner}: {path} is read as unknown but the condition tests no normal value of it")
        if not spec.get("statement"):
            self.problem(f"{owner}: has no statement")
        return Conflict(
            cid, spec.get("statement", ""), when, unknown, self._cite(citations, spec.get("citations"), owner)
        )

    def _scope(self, spec: dict, citations: dict[str, Citation]) -> Scope | None:
        if not spec:
            return None
        age, notes = spec.get("age"), spec.get("notes") or {}
        finding = self.findings.get(age)
        if finding is None or not finding.attribute:
            self.problem(f"scope: age must name an attribute finding, not {age!r}")
        return Scope(age, spec["min_age"], dict(notes), self._cite(citations, spec.get("citations"), "scope"))

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
