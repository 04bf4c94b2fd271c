"""Knowledge authoring helpers (need the source texts; the service itself does not).

python tools/author.py manifest SEEDS_DIR   rebuild service/knowledge/sources.yaml
python tools/author.py cite SEEDS_DIR       fill start/end/sha256 of every citation in
                                            service/knowledge/citations.yaml from its
                                            (source, section, paragraph, sentences)
python tools/author.py show SEEDS_DIR SRC SECTION   list paragraphs and sentence numbers
                                            (to your terminal only: never commit the text)

The service's own policy (docs/clinical-safety/policy.md, `held: project`) is read from this repository,
not from SEEDS_DIR: after editing it, run `make manifest cite` to refresh its hash and the spans cited.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from service.knowledge.yamlfile import DataFileError, read_yaml

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "service" / "knowledge"
# Closing quotes and brackets (straight or typographic) may follow the end of a sentence.
SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"\u201d\u2019)]*\s+(?=\S)")


def _read(path: Path) -> Any:
    """A YAML file, read as the service reads its data files (a key written twice is an error)."""
    try:
        return read_yaml(path, str(path.relative_to(ROOT))).data
    except DataFileError as exc:
        sys.exit(str(exc))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for line in text.split("\n"):
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def short_heading(heading: str, max_words: int = 9) -> str:
    """Headings identify sections; a long one is cut so the project never repeats ten words of a text."""
    tokens = heading.split()
    while len(re.findall(r"[a-z0-9]+", " ".join(tokens).lower())) > max_words:
        tokens.pop()
    return heading if len(tokens) == len(heading.split()) else " ".join(tokens) + " …"


def build_source(layout: dict, text: str) -> dict:
    lines = _line_spans(text)
    sections = []
    marks = layout["sections"]
    for i, sec in enumerate(marks):
        first = sec["line"] - 1
        last = marks[i + 1]["line"] - 1 if i + 1 < len(marks) else len(lines)
        has_heading = sec.get("heading", "") is not None
        heading = None
        body_from = first
        if has_heading:
            h0, h1 = _strip_span(text, *lines[first])
            heading = short_heading(text[h0:h1])
            body_from = first + 1
        paragraphs = []
        for s, e in lines[body_from:last]:
            s, e = _strip_span(text, s, e)
            if e > s:
                paragraphs.append([s, e])
        sec_start = lines[first][0]
        sec_end = lines[last][0] if last < len(lines) else len(text)
        sections.append(
            {"id": sec["id"], "heading": heading, "start": sec_start, "end": sec_end, "paragraphs": paragraphs}
        )
    return {k: layout[k] for k in ("id", "file", "title", "kind", "authority")} | {
        "sha256": sha256(text),
        "length": len(text),
        "sections": sections,
    }


def markdown_layout(layout: dict, text: str) -> dict:
    """Sections of a Markdown text: one per `## ID heading` line, the text before the first being `preamble`."""
    sections = [{"id": "preamble", "line": 1, "heading": None}]
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("## "):
            sections.append({"id": line[3:].split()[0], "line": number})
    return layout | {"sections": sections}


def build_markdown_source(layout: dict, text: str) -> dict:
    """As build_source, with paragraphs as blocks between blank lines and headings kept whole (our own words)."""
    lines = _line_spans(text)
    marks = markdown_layout(layout, text)["sections"]
    sections = []
    for i, sec in enumerate(marks):
        first = sec["line"] - 1
        last = marks[i + 1]["line"] - 1 if i + 1 < len(marks) else len(lines)
        heading = None if sec.get("heading", "") is None else text[slice(*_strip_span(text, *lines[first]))][3:]
        body = lines[first + (heading is not None) : last]
        paragraphs, block = [], []
        for s, e in [*body, (0, 0)]:
            if text[s:e].strip() and not text[s:e].startswith("#"):
                block.append((s, e))
            elif block:
                paragraphs.append(list(_strip_span(text, block[0][0], block[-1][1])))
                block = []
        sec_end = lines[last][0] if last < len(lines) else len(text)
        sections.append(
            {"id": sec["id"], "heading": heading, "start": lines[first][0], "end": sec_end, "paragraphs": paragraphs}
        )
    keys = ("id", "file", "held", "title", "kind", "authority")
    return {k: layout[k] for k in keys} | {"sha256": sha256(text), "length": len(text), "sections": sections}


def source_text(src: dict, seeds: Path) -> str:
    """The text of a source: from the repository for the service's own (`held: project`), else from SEEDS_DIR."""
    folder = ROOT if src.get("held") == "project" else seeds
    return (folder / src["file"]).read_text(encoding="utf-8")


def manifest(seeds: Path) -> None:
    layout = _read(ROOT / "tools" / "source_layout.yaml")
    sources = []
    for s in layout["sources"]:
        text = source_text(s, seeds)
        if s.get("layout") == "markdown":
            sources.append(build_markdown_source(s, text))
        else:
            sources.append(build_source(s, text) | {"held": "texts"})
    out = KNOWLEDGE / "sources.yaml"
    header = "# Generated by `python tools/author.py manifest` from tools/source_layout.yaml. Do not edit.\n"
    out.write_text(header + yaml.safe_dump({"sources": sources}, sort_keys=False, width=100))
    print(f"wrote {out.relative_to(ROOT)}")


def sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for m in SENTENCE_END.finditer(text, start, end):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    return [_strip_span(text, s, e) for s, e in spans]


def _paragraph(src: dict, section: str, number: int) -> tuple[int, int]:
    sec = next(s for s in src["sections"] if s["id"] == section)
    return tuple(sec["paragraphs"][number - 1])


def cite(seeds: Path) -> None:
    sources = {s["id"]: s for s in _read(KNOWLEDGE / "sources.yaml")["sources"]}
    path = KNOWLEDGE / "citations.yaml"
    doc = _read(path)
    texts = {}
    for cid, c in doc["citations"].items():
        src = sources[c["source"]]
        if src["id"] not in texts:
            texts[src["id"]] = source_text(src, seeds)
        text = texts[src["id"]]
        p0, p1 = _paragraph(src, c["section"], c["paragraph"])
        if "sentences" in c:
            sent = sentences(text, p0, p1)
            a, b = c["sentences"]
            if not 1 <= a <= b <= len(sent):
                sys.exit(f"{cid}: sentences {a}-{b} out of range 1-{len(sent)}")
            p0, p1 = sent[a - 1][0], sent[b - 1][1]
        c.update(start=p0, end=p1, sha256=sha256(text[p0:p1]))
    head = [ln for ln in path.read_text().splitlines(keepends=True) if ln.startswith("#")]
    rows = [f"  {cid}: {json.dumps(c)}\n" for cid, c in doc["citations"].items()]
    path.write_text("".join(head) + "citations:\n" + "".join(rows))
    print(f"filled {len(doc['citations'])} citations in {path.relative_to(ROOT)}")


def show(seeds: Path, source: str, section: str) -> None:
    sources = {s["id"]: s for s in _read(KNOWLEDGE / "sources.yaml")["sources"]}
    src = sources[source]
    text = source_text(src, seeds)
    sec = next(s for s in src["sections"] if s["id"] == section)
    for n, (p0, p1) in enumerate(sec["paragraphs"], 1):
        for k, (s0, s1) in enumerate(sentences(text, p0, p1), 1):
            print(f"p{n} s{k}: {text[s0:s1]}")


if __name__ == "__main__":
    cmd, seeds, *rest = sys.argv[1:]
    {"manifest": manifest, "cite": cite, "show": show}[cmd](Path(seeds), *rest)
