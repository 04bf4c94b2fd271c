"""Which sections of the source texts the knowledge base cites, and why the others are left out.

`python -m service knowledge check` prints this report. Every section of every source is listed
with the rules, causes and advice citing it; a section cited by none must have its reason recorded
in the knowledge directory's coverage.yaml, and a reason recorded for a section that is cited (or
does not exist) is stale. Either is a problem the check fails on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.engine.model import KnowledgeBase
from service.knowledge.loader import COVERAGE_FILE, KnowledgeError, read_checked
from service.knowledge.schemas import CoverageFile


@dataclass(frozen=True)
class Section:
    source: str
    section: str
    heading: str
    cited_by: tuple[str, ...]  # "rule RF-...", "cause ...", "advice ...", "conflict CF-...", "scope"
    reason: str | None  # why it is cited by none, when it is not


@dataclass
class Coverage:
    sections: list[Section] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def coverage(kb: KnowledgeBase, folder: Path) -> Coverage:
    """The coverage of the sources by `kb`, with the reasons recorded in `folder`/coverage.yaml."""
    reasons = _reasons(folder / COVERAGE_FILE)
    users: dict[tuple[str, str], list[str]] = {}
    kinds = (("rule", kb.rules), ("cause", kb.causes.values()), ("advice", kb.advice.values()))
    kinds += (("conflict", kb.conflicts),)
    for kind, items in kinds:
        for item in items:
            for citation in item.citations:
                users.setdefault((citation.source, citation.section), []).append(f"{kind} {item.id}")
    for citation in kb.scope.citations if kb.scope else ():
        users.setdefault((citation.source, citation.section), []).append("scope")
    report = Coverage()
    known = set()
    for source in kb.sources:
        for section in source["sections"]:
            key = (source["id"], section["id"])
            known.add(key)
            cited_by = tuple(dict.fromkeys(users.get(key, ())))
            reason = reasons.get(key)
            report.sections.append(Section(*key, section["heading"] or "", cited_by, reason))
            if not cited_by and not reason:
                report.problems.append(f"{key[0]} {key[1]}: cited by none, and no reason recorded in {COVERAGE_FILE}")
            if cited_by and reason:
                report.problems.append(f"{key[0]} {key[1]}: cited, yet {COVERAGE_FILE} says why it is not")
    for key in reasons.keys() - known:
        report.problems.append(f"{key[0]} {key[1]}: in {COVERAGE_FILE}, but no such section")
    return report


def render(report: Coverage) -> str:
    lines = []
    source = None
    for s in report.sections:
        if s.source != source:
            source = s.source
            lines.append(f"source {s.source}")
        heading = f" ({s.heading})" if s.heading else ""
        cited_by = ", ".join(s.cited_by) if s.cited_by else f"cited by none: {s.reason or 'NO REASON RECORDED'}"
        lines.append(f"  {s.section}{heading}: {cited_by}")
    cited = sum(1 for s in report.sections if s.cited_by)
    lines.append(f"{cited} of {len(report.sections)} sections cited; {len(report.problems)} problem(s)")
    lines += [f"problem: {p}" for p in report.problems]
    return "\n".join(lines)


def _reasons(path: Path) -> dict[tuple[str, str], str]:
    if not path.is_file():
        return {}
    # load_knowledge has checked this file already when it came from the same folder; not so otherwise.
    data, problems = read_checked(path, CoverageFile)
    if problems:
        raise KnowledgeError(problems)
    return {
        (source, section): reason
        for source, sections in data["uncited"].items()
        for section, reason in sections.items()
    }
