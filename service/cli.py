"""`python -m service ...`: tools for knowledge authors and safety reviewers.

    python -m service knowledge check [--knowledge DIR] [--texts SEEDS_DIR]
    python -m service knowledge graph -o PICTURE.svg|.png [--knowledge DIR]

knowledge check validates the knowledge base as start-up does (every file's shape, then what it means;
with --texts, every citation against the source texts; the fhir_mapping.yaml beside it, if any,
against its findings) and prints its coverage of the sources: every section with the rules,
causes and advice citing it, and the recorded reason for each section cited by none. Exit status
0 when all holds, 1 when a section lacks a reason or a reason is stale, 2 when the knowledge base
or the mapping does not load (every problem listed, each with its file and path) or a citation does
not match its text.

    python -m service evaluate CASES.jsonl [-o RESULTS.jsonl] [--knowledge DIR]
                               [--compare OTHER_DIR [--allow-downgrade]]

evaluate triages a file of cases (one POST /v1/triage body per line) into JSONL results, one
record per case: {"line": n, "answer": ...} or {"line": n, "error": ..., "fields": ...}. A bad
line is reported on stderr with its line number and the run goes on. With --compare it evaluates
each case with a second knowledge base too, prints every case whose level, causes or referrals
change with the rules responsible, and adds the change to the case's record.

Exit status: 0 when every line was answered and no case got less urgent; 1 when a case got less
urgent under --compare (unless --allow-downgrade); 3 when some lines were bad (and nothing got
less urgent); 2 for a usage error or a knowledge base that does not load.

Like the service, every command reads the TRIAGE_* settings first (service/settings.py): an unknown
name or a bad value stops it (exit 2). --knowledge defaults to TRIAGE_KNOWLEDGE_DIR (else the bundled
knowledge) and `knowledge check --texts` to TRIAGE_SOURCE_TEXTS_DIR: the knowledge the service would load.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from service.cases import CaseResult, Tally, compare, triage_lines
from service.cds.mapping import load_mapping
from service.coverage import coverage, render
from service.engine import evaluate
from service.knowledge import KnowledgeError, load_knowledge
from service.knowledge.loader import BUNDLED
from service.knowledge.texts import verify_texts
from service.settings import SettingsError, from_environment

DOWNGRADE, BAD_LINES, USAGE = 1, 3, 2
MAPPING_FILE = "fhir_mapping.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("evaluate", help="triage a JSONL file of cases")
    run.add_argument("cases", type=Path, help="one POST /v1/triage body per line ('-' for stdin)")
    run.add_argument("-o", "--out", type=Path, help="JSONL results here (default: stdout)")
    run.add_argument("--knowledge", type=Path, help="knowledge directory (default: the bundled one)")
    run.add_argument("--compare", type=Path, metavar="OTHER_KNOWLEDGE_DIR", help="also evaluate with this one")
    run.add_argument("--allow-downgrade", action="store_true", help="exit 0 even if a case got less urgent")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (drawn only on a terminal)")
    knowledge = commands.add_parser("knowledge", help="review the knowledge base").add_subparsers(
        dest="action", required=True
    )
    check = knowledge.add_parser("check", help="validate it and report its coverage of the sources")
    check.add_argument("--knowledge", type=Path, help="knowledge directory (default: the bundled one)")
    check.add_argument("--texts", type=Path, help="the source texts (verify every citation against them)")
    graph = knowledge.add_parser("graph", help="draw the rules: findings -> rules -> levels, causes, referrals")
    graph.add_argument("-o", "--out", type=Path, required=True, help="the picture, .svg or .png")
    graph.add_argument("--knowledge", type=Path, help="knowledge directory (default: the bundled one)")
    for name, summary in AUTHORING.items():
        step = knowledge.add_parser(name, help=summary)
        step.add_argument("--texts", type=Path, help="the source texts (default: TRIAGE_SOURCE_TEXTS_DIR)")
        step.add_argument("--knowledge", type=Path, help="knowledge directory (default: the bundled one)")
        if name == "show":
            step.add_argument("source", help="source id, such as 000")
            step.add_argument("section", help="section id, such as when_to_seek")
    args = parser.parse_args(argv)
    try:
        settings = from_environment()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    if args.knowledge is None and settings.get("KNOWLEDGE_DIR"):
        args.knowledge = Path(settings["KNOWLEDGE_DIR"])
    if getattr(args, "texts", False) is None and settings.get("SOURCE_TEXTS_DIR"):
        args.texts = Path(settings["SOURCE_TEXTS_DIR"])
    if args.command == "evaluate":
        return _evaluate(args)
    if args.action in AUTHORING:
        return _author(args)
    return _check(args) if args.action == "check" else _graph(args)


AUTHORING = {
    "manifest": "rebuild sources.yaml from source_layout.yaml and the texts",
    "cite": "fill every citation's offsets and SHA-256 from the texts",
    "show": "print a section's paragraphs and sentence numbers (to the terminal only: never commit a text)",
}


def _author(args: argparse.Namespace) -> int:
    from service.knowledge import authoring

    if args.texts is None:
        print("error: the source texts are needed: --texts DIR or TRIAGE_SOURCE_TEXTS_DIR", file=sys.stderr)
        return USAGE
    folder = Path(args.knowledge or BUNDLED)
    try:
        if args.action == "manifest":
            print(f"wrote {authoring.manifest(args.texts, folder)}")
        elif args.action == "cite":
            print(f"filled {authoring.cite(args.texts, folder)} citations in {folder / 'citations.yaml'}")
        else:
            print("\n".join(authoring.show(args.texts, folder, args.source, args.section)))
    except (OSError, ValueError, KeyError, IndexError) as exc:  # AuthoringError and DataFileError are ValueErrors
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return USAGE
    return 0


def _graph(args: argparse.Namespace) -> int:
    from service.graph import GraphvizMissing, draw  # graphviz only for this command

    try:
        kb = load_knowledge(args.knowledge)
        written = draw(kb, args.out)
    except (KnowledgeError, OSError, ValueError, GraphvizMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    print(f"{written}: {len(kb.rules)} rules of knowledge {kb.version}")
    return 0


def _check(args: argparse.Namespace) -> int:
    folder = Path(args.knowledge or BUNDLED)
    try:
        kb = load_knowledge(folder)
        # The service's own policy is in this repository and always checked; the texts when given.
        verify_texts(kb, args.texts)
        mapping = folder / MAPPING_FILE
        if mapping.is_file():  # the FHIR mapping kept beside the knowledge must fit its findings
            load_mapping(kb, mapping)
    except (KnowledgeError, OSError, ValueError) as exc:  # MappingError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    report = coverage(kb, folder)
    print(f"knowledge {kb.version} (sha256 {kb.sha256}): {len(kb.rules)} rules, valid")
    print(render(report))
    return 1 if report.problems else 0


def _evaluate(args: argparse.Namespace) -> int:
    try:
        kb = load_knowledge(args.knowledge)
        other = load_knowledge(args.compare) if args.compare else None
    except (KnowledgeError, OSError) as exc:  # the loader lists every problem it found
        print(f"error: knowledge base does not load: {exc}", file=sys.stderr)
        return USAGE
    stdin = str(args.cases) == "-"
    if not stdin and not args.cases.is_file():
        print(f"error: no such file: {args.cases}", file=sys.stderr)
        return USAGE
    tally = Tally()
    with (
        contextlib.nullcontext(sys.stdin.buffer) if stdin else args.cases.open("rb") as lines,
        contextlib.nullcontext(sys.stdout.buffer) if args.out is None else args.out.open("wb") as out,
    ):
        total = None if stdin else _count_lines(args.cases)
        # A bar redraws itself with carriage returns: only for a terminal, never into a log file or pipe.
        quiet = args.no_progress or not sys.stderr.isatty()
        bar = tqdm(total=total, unit="case", file=sys.stderr, disable=quiet, dynamic_ncols=True)
        with bar:
            for outcome in triage_lines(kb, lines):
                out.write(orjson.dumps(_record(outcome, kb, other, tally, bar)) + b"\n")
                bar.update(outcome.line - bar.n)  # blank lines count as read
    sys.stdout.flush()
    if other is not None:
        print(f"{tally.changed} of {tally.cases} cases changed, {tally.less_urgent} less urgent", file=sys.stderr)
    if tally.bad_lines:
        print(f"{tally.bad_lines} bad line(s)", file=sys.stderr)
    if tally.less_urgent and not args.allow_downgrade:
        return DOWNGRADE
    return BAD_LINES if tally.bad_lines else 0


def _record(outcome: CaseResult, kb: Any, other: Any, tally: Tally, bar: tqdm) -> dict[str, Any]:
    if outcome.answer is None:
        tally.bad_lines += 1
        note = f"line {outcome.line}: {outcome.error}" + (f" {_fields(outcome.fields)}" if outcome.fields else "")
        bar.write(note, file=sys.stderr)
        return {"line": outcome.line, "error": outcome.error, "fields": outcome.fields}
    tally.cases += 1
    record: dict[str, Any] = {"line": outcome.line, "answer": outcome.answer}
    if other is not None:
        change = compare(outcome.line, outcome.answer, evaluate(other, outcome.request), kb)
        if change is not None:
            tally.changed += 1
            tally.less_urgent += int(change.less_urgent)
            bar.write(change.describe(), file=sys.stderr)
            record["change"] = change.as_record()
    return record


def _fields(messages: Any) -> str:
    # Field paths only: marshmallow's messages name fields and rules, never the submitted values.
    return "(" + ", ".join(sorted(_paths(messages, ""))) + ")"


def _paths(node: Any, path: str) -> set[str]:
    if not isinstance(node, dict):
        return {path}
    return set().union(*(_paths(value, f"{path}.{key}" if path else str(key)) for key, value in node.items()))


def _count_lines(path: Path) -> int:
    # For the progress bar's total: one more streaming pass, in 1 MiB chunks.
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
