"""The knowledge base: citations resolve against the source texts, and bad knowledge stops start-up."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from marshmallow import fields, validate

from schemas.cds import Card
from schemas.triage import ReferralOut, TriageLevel, TriageRequest
from service import create_app
from service.knowledge import KnowledgeError, load_knowledge
from service.knowledge.loader import BUNDLED
from service.knowledge.texts import load_texts
from tests.knowledge_copies import knowledge_with

ROOT = Path(__file__).resolve().parent.parent


def test_every_citation_resolves_against_the_source_texts(kb, seeds_dir):
    assert load_texts(kb, seeds_dir)[1] == []
    assert len(kb.citations) > 50


def test_every_citation_of_the_service_policy_resolves_against_the_repository(kb):
    """The policy (docs/clinical-safety/policy.md) is a source like the texts: an edit without
    `make manifest cite` fails here."""
    assert load_texts(kb, None)[1] == []
    assert sum(c.source == "SP" for c in kb.citations.values()) >= 20


def test_every_source_fingerprint_matches_its_file(kb, seeds_dir):
    import hashlib

    for src in kb.sources:
        folder = ROOT if src["held"] == "project" else seeds_dir
        text = (folder / src["file"]).read_text(encoding="utf-8")
        assert hashlib.sha256(text.encode()).hexdigest() == src["sha256"]
        assert len(text) == src["length"]


def test_an_edited_policy_is_refused(kb, tmp_path):
    policy = tmp_path / "docs" / "clinical-safety" / "policy.md"
    policy.parent.mkdir(parents=True)
    text = (ROOT / "docs" / "clinical-safety" / "policy.md").read_text(encoding="utf-8")
    policy.write_text(text.replace("65", "75", 1), encoding="utf-8")
    assert load_texts(kb, None, project=tmp_path)[1] == [
        "source SP: docs/clinical-safety/policy.md differs from the text the knowledge base cites"
    ]


def test_a_changed_source_text_stops_start_up(kb, seeds_dir, tmp_path):
    texts = tmp_path / "texts"
    shutil.copytree(seeds_dir, texts)
    target = texts / kb.sources[0]["file"]
    target.write_text(target.read_text(encoding="utf-8").replace("leg", "arm", 1), encoding="utf-8")
    with pytest.raises(KnowledgeError, match="differs from the text"):
        create_app({"SOURCE_TEXTS_DIR": str(texts)})


def test_the_project_does_not_repeat_the_source_texts(seeds_dir):
    """Cite, don't copy: no tracked file shares a run of ten words with a source text."""

    def words(text):
        return re.findall(r"[a-z0-9]+", text.lower())

    grams = set()
    for path in seeds_dir.glob("*.txt"):
        w = words(path.read_text(encoding="utf-8"))
        grams.update(tuple(w[i : i + 10]) for i in range(len(w) - 9))
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in tracked:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        w = words(path.read_text(encoding="utf-8", errors="ignore"))
        if any(tuple(w[i : i + 10]) in grams for i in range(len(w) - 9)):
            hits.append(name)
    assert hits == []


def test_sources_record_their_kind_and_authority(kb):
    by_id = {s["id"]: s for s in kb.sources}
    assert {by_id[i]["authority"] for i in ("000", "001")} == {"clinical"}
    assert {by_id[i]["authority"] for i in ("002", "003", "004")} == {"fitness"}
    assert (by_id["SP"]["authority"], by_id["SP"]["held"]) == ("service_policy", "project")


def test_the_hash_is_stable_and_covers_the_content(tmp_path):
    assert load_knowledge(BUNDLED).sha256 == load_knowledge().sha256  # a fresh parse and the cached one
    folder = knowledge_with(tmp_path)
    _edit(folder, "catalog", lambda d: d["levels"]["urgent"].update(action="Changed wording."))
    assert load_knowledge(folder).sha256 != load_knowledge().sha256


@pytest.mark.cli
def test_the_engine_runs_without_flask():
    code = "import sys, service.engine, service.knowledge; assert 'flask' not in sys.modules, 'flask imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def _leaf_choices(schema, prefix="findings"):
    out = {}
    for name, field in schema.fields.items():
        path = f"{prefix}.{name}"
        if isinstance(field, fields.Nested):
            out |= _leaf_choices(field.schema, path)
            continue
        inner = field.inner if isinstance(field, fields.List) else field
        choices = [v for v in (inner.validators or []) if isinstance(v, validate.OneOf)]
        out[path] = tuple(choices[0].choices) if choices else None
    return out


def test_request_schema_and_finding_catalog_agree(kb):
    schema = TriageRequest().fields["findings"].schema
    leaves = _leaf_choices(schema)
    assert set(leaves) | {"patient.age"} == set(kb.findings)
    for path, choices in leaves.items():
        finding = kb.findings[path]
        if finding.kind == "int":
            assert choices is None
        else:
            assert set(choices) == set(finding.values), path


def test_answer_and_card_enums_are_the_catalogs(kb):
    """Issue 21: every label lives in the catalog, and the published enums list exactly its ids, so a
    target, test or urgency added there cannot answer outside the documented contract."""
    referral = ReferralOut().fields
    assert referral["to"].validate.choices == tuple(kb.referral_targets)
    assert referral["urgency"].validate.choices == tuple(kb.urgencies)
    assert referral["tests"].inner.validate.choices == tuple(kb.tests)
    assert TriageLevel().fields["level"].validate.choices == tuple(kb.levels)
    assert {lv.indicator for lv in kb.levels.values()} <= set(Card().fields["indicator"].validate.choices)
    assert set(kb.levels) <= set(kb.urgencies)  # a level's own referral goes at the level's urgency


# --- invalid knowledge stops start-up with a clear message ---------------------------------------
def _edit(folder, name, change):
    path = folder / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _rule(doc, rule_id):
    return next(r for r in doc["rules"] if r["id"] == rule_id)


BROKEN = [
    (
        "unknown finding",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL").update(when={"fact": "findings.bowels", "is": "x"}),
        "unknown finding 'findings.bowels'",
    ),
    (
        "value the finding cannot take",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL").update(when={"fact": "findings.bowel", "is": "retention"}),
        "has no value 'retention'",
    ),
    ("rule without citation", "rules", lambda d: _rule(d, "RF-CES-BOWEL").update(citations=[]), "has no citation"),
    (
        "unknown citation id",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL").update(citations=["000.nowhere"]),
        "unknown citation '000.nowhere'",
    ),
    (
        "span outside its paragraph",
        "citations",
        lambda d: d["citations"]["000.seek.saddle_area"].update(
            end=d["citations"]["000.seek.saddle_area"]["end"] + 500
        ),
        "is not inside paragraph",
    ),
    (
        "paragraph that does not exist",
        "citations",
        lambda d: d["citations"]["000.seek.saddle_area"].update(paragraph=9),
        "has no paragraph 9",
    ),
    (
        "level set by a normal value",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL").update(when={"fact": "findings.bowel", "is": "normal"}),
        "sets a level from a normal value",
    ),
    (
        "level above self-care on fitness sources alone",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL").update(citations=["004.back.see_physical_therapist"]),
        "needs a clinical source",
    ),
    (
        "unknown cause",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL")["then"].update(causes={"gout": 1}),
        "unknown cause 'gout'",
    ),
    ("duplicate rule id", "rules", lambda d: d["rules"].append(dict(_rule(d, "RF-CES-BOWEL"))), "used more than once"),
    (
        "level below the urgency words of a cited passage (policy SP-2)",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL")["then"].update(level="urgent"),
        "cites 000.seek.ces_bladder_bowel, whose words mean emergency, but sets urgent",
    ),
    (
        "level set from a finding being below a bound (only an attribute such as age may)",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL").update(when={"fact": "findings.pain.severity", "below": 3}),
        "sets a level from a normal value of findings.pain.severity",
    ),
    (
        "cause weight off the policy's scale",
        "rules",
        lambda d: _rule(d, "RF-CES-BOWEL")["then"].update(causes={"cauda_equina_syndrome": 5}),
        "weight 5 is not one of",
    ),
    (
        "a conflict setting aside an abnormal reading",
        "findings",
        lambda d: d["conflicts"][0].update(unknown=["findings.pain.unrelenting"]),
        "findings.pain.unrelenting is read as unknown but the condition tests no normal value of it",
    ),
    (
        "a count that can never hold",
        "rules",
        lambda d: _rule(d, "RF-WARNING-SIGNS-TOGETHER")["when"].update(at_least=5),
        "at_least 5 of 4 conditions can never hold",
    ),
]


@pytest.mark.parametrize(("name", "file", "change", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_invalid_knowledge_stops_start_up(tmp_path, name, file, change, message):
    folder = knowledge_with(tmp_path)
    _edit(folder, file, change)
    with pytest.raises(KnowledgeError) as info:
        create_app({"KNOWLEDGE_DIR": str(folder)})
    assert message in str(info.value)
