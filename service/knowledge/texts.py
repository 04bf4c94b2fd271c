"""Check the knowledge base against the source texts (when an operator has them at hand).

The published texts are outside the project and read from the folder the operator names. The
service's own policy (`held: project` in sources.yaml) is part of this repository and read from it;
an installation without the repository's docs (the container image) skips it, and the tests and
`python -m service knowledge check` always check it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.engine.model import KnowledgeBase
from service.knowledge.loader import KnowledgeError

PROJECT = Path(__file__).resolve().parents[2]  # where `held: project` sources are


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_texts(
    kb: KnowledgeBase, folder: Path | str | None, project: Path | None = PROJECT
) -> tuple[dict[str, str], list[str]]:
    """The texts that match the fingerprints the knowledge base cites (source id -> text), and the problems:
    every source whose file cannot be read or whose hash differs, and every citation whose span hash differs.

    Published texts come from `folder` (skipped when None); the project's own from `project` (skipped
    when None, or when the file is not there and `folder` is not None: an installation without docs)."""
    problems, texts = [], {}
    for src in kb.sources:
        own = src.get("held") == "project"
        base = project if own else (Path(folder) if folder is not None else None)
        if base is None:
            continue
        path = base / src["file"]
        if own and folder is not None and not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"source {src['id']}: cannot read {path}: {exc}")
            continue
        if sha256(text) != src["sha256"]:
            problems.append(f"source {src['id']}: {src['file']} differs from the text the knowledge base cites")
            continue
        texts[src["id"]] = text
    for cit in kb.citations.values():
        text = texts.get(cit.source)
        if text is not None and sha256(text[cit.start : cit.end]) != cit.sha256:
            problems.append(f"citation {cit.id}: span {cit.start}-{cit.end} does not match its sha256")
    return texts, problems


def verify_texts(kb: KnowledgeBase, folder: Path | str | None) -> dict[str, str]:
    """The verified texts (source id -> text); raises KnowledgeError listing every mismatch."""
    texts, problems = load_texts(kb, folder)
    if problems:
        raise KnowledgeError(problems)
    return texts


def shown_texts(kb: KnowledgeBase, folder: Path | str | None) -> dict[str, str]:
    """The texts the service may show beside a citation: with `folder`, every text (verified, else
    KnowledgeError); without it, only the service's own policy, when this installation holds it unchanged."""
    if folder:
        return verify_texts(kb, folder)
    texts, _ = load_texts(kb, None)  # a missing or edited policy is simply not shown
    return texts
