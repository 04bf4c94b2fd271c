"""Knowledge authoring: the source manifest and the citation spans, built from the texts.

    python -m service knowledge manifest --texts SEEDS   rebuild sources.yaml from source_layout.yaml
    python -m service knowledge cite --texts SEEDS       fill start, end and sha256 of every citation
                                                         from its (source, section, paragraph[, sentences])
    python -m service knowledge show --texts SEEDS SOURCE SECTION
                                                         paragraphs and sentence numbers, to the terminal
                                                         only: never commit a source's text

The service's own policy (docs/clinical-safety/policy.md, `held: project`) is read from this project, not
from the texts folder: after editing it, run `make manifest cite` to refresh its hash and the spans cited.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from service.knowledge.texts import PROJECT, sha256
from service.knowledge.yamlfile import read_yaml

LAYOUT = Path(__file__).with_name("source_layout.yaml")
# Closing quotes and brackets (straight or typographic) may follow the end of a sentence.
SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"\u201d\u2019)]*\s+(?=\S)")
Span = tuple[int, int]


class AuthoringError(ValueError):
    """A layout, source or citation that cannot be built; the message names it."""


def _read(path: Path) -> Any:
    return read_yaml(path, path.name).data  # a key written twice is an error, as for every data file


def _lines(text: str) -> list[Span]:
    spans, pos = [], 0
    for line in text.split("\n"):
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


def _strip(text: str, start: int, end: int) -> Span:
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


def _marks(layout: dict[str, Any], text: str) -> list[dict[str, Any]]:
    if layout.get("layout") != "markdown":
        return layout["sections"]
    # Markdown (our own policy): one section per `## ID heading` line, the text before the first `preamble`.
    marks = [{"id": "preamble", "line": 1, "heading": None}]
    marks += [{"id": line[3:].split()[0], "line": n} for n, line in enumerate(text.split("\n"), 1) if line[:3] == "## "]
    return marks


def _paragraphs(text: str, body: list[Span], markdown: bool) -> list[list[int]]:
    out: list[list[int]] = []
    if not markdown:  # a source text: each non-empty line is a paragraph
        for s, e in body:
            start, end = _strip(text, s, e)
            if end > start:
                out.append([start, end])
        return out
    block: list[Span] = []  # Markdown: blocks between blank lines (and headings)
    for s, e in [*body, (0, 0)]:
        if text[s:e].strip() and not text[s:e].startswith("#"):
            block.append((s, e))
        elif block:
            out.append(list(_strip(text, block[0][0], block[-1][1])))
            block = []
    return out


def build_source(layout: dict[str, Any], text: str) -> dict[str, Any]:
    """A sources.yaml entry: sections with their heading, offsets and paragraph spans, and the text's hash."""
    markdown = layout.get("layout") == "markdown"
    lines, marks, sections = _lines(text), _marks(layout, text), []
    for i, mark in enumerate(marks):
        first = mark["line"] - 1
        last = marks[i + 1]["line"] - 1 if i + 1 < len(marks) else len(lines)
        heading = None
        if mark.get("heading", "") is not None:
            line = text[slice(*_strip(text, *lines[first]))]
            heading = line[3:] if markdown else short_heading(line)  # our own headings are kept whole
        body = lines[first + (heading is not None) : last]
        end = lines[last][0] if last < len(lines) else len(text)
        sections.append(
            {
                "id": mark["id"],
                "heading": heading,
                "start": lines[first][0],
                "end": end,
                "paragraphs": _paragraphs(text, body, markdown),
            }
        )
    keys = (
        ("id", "file", "held", "title", "kind", "authority")
        if markdown
        else ("id", "file", "title", "kind", "authority")
    )
    entry = {k: layout[k] for k in keys} | {"sha256": sha256(text), "length": len(text), "sections": sections}
    return entry if markdown else entry | {"held": "texts"}


def source_text(source: dict[str, Any], texts: Path) -> str:
    """A source's text: from this project for the service's own (`held: project`), else from `texts`."""
    folder = PROJECT if source.get("held") == "project" else texts
    return (folder / source["file"]).read_text(encoding="utf-8")


def manifest(texts: Path, knowledge: Path) -> Path:
    """Write knowledge/sources.yaml from the layout and the texts; returns its path."""
    sources = [build_source(s, source_text(s, texts)) for s in _read(LAYOUT)["sources"]]
    out = knowledge / "sources.yaml"
    header = "# Generated by `python -m service knowledge manifest` from source_layout.yaml. Do not edit.\n"
    out.write_text(header + yaml.safe_dump({"sources": sources}, sort_keys=False, width=100), encoding="utf-8")
    return out


def sentences(text: str, start: int, end: int) -> list[Span]:
    spans, pos = [], start
    for m in SENTENCE_END.finditer(text, start, end):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    return [_strip(text, s, e) for s, e in spans]


def _section(source: dict[str, Any], section: str) -> dict[str, Any]:
    found = next((s for s in source["sections"] if s["id"] == section), None)
    if found is None:
        raise AuthoringError(f"source {source['id']} has no section {section!r}")
    return found


def cite(texts: Path, knowledge: Path) -> int:
    """Fill every citation's start, end and sha256 in knowledge/citations.yaml; returns how many."""
    sources = {s["id"]: s for s in _read(knowledge / "sources.yaml")["sources"]}
    path = knowledge / "citations.yaml"
    citations = _read(path)["citations"]
    for cid, c in citations.items():
        source = sources[c["source"]]
        text = source_text(source, texts)
        start, end = _section(source, c["section"])["paragraphs"][c["paragraph"] - 1]
        if "sentences" in c:
            found, (a, b) = sentences(text, start, end), c["sentences"]
            if not 1 <= a <= b <= len(found):
                raise AuthoringError(f"{cid}: sentences {a}-{b} out of range 1-{len(found)}")
            start, end = found[a - 1][0], found[b - 1][1]
        c.update(start=start, end=end, sha256=sha256(text[start:end]))
    head = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.startswith("#")]
    rows = [f"  {cid}: {json.dumps(c)}\n" for cid, c in citations.items()]
    path.write_text("".join(head) + "citations:\n" + "".join(rows), encoding="utf-8")
    return len(citations)


def show(texts: Path, knowledge: Path, source: str, section: str) -> list[str]:
    """Each sentence of a section as `p<paragraph> s<sentence>: text`, for a terminal only."""
    found = {s["id"]: s for s in _read(knowledge / "sources.yaml")["sources"]}
    if source not in found:
        raise AuthoringError(f"no source {source!r}")
    text = source_text(found[source], texts)
    out = []
    for n, (start, end) in enumerate(_section(found[source], section)["paragraphs"], 1):
        out += [f"p{n} s{k}: {text[a:b]}" for k, (a, b) in enumerate(sentences(text, start, end), 1)]
    return out
