"""Check the knowledge base against the source texts (when an operator has them at hand)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.engine.model import KnowledgeBase
from service.knowledge.loader import KnowledgeError


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_problems(kb: KnowledgeBase, folder: Path | str) -> list[str]:
    """Every source whose file hash differs and every citation whose span hash differs."""
    folder = Path(folder)
    problems, texts = [], {}
    for src in kb.sources:
        path = folder / src["file"]
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"source {src['id']}: cannot read {path}: {exc}")
            continue
        if _sha256(text) != src["sha256"]:
            problems.append(f"source {src['id']}: {src['file']} differs from the text the knowledge base cites")
            continue
        texts[src["id"]] = text
    for cit in kb.citations.values():
        text = texts.get(cit.source)
        if text is not None and _sha256(text[cit.start : cit.end]) != cit.sha256:
            problems.append(f"citation {cit.id}: span {cit.start}-{cit.end} does not match its sha256")
    return problems


def verify_texts(kb: KnowledgeBase, folder: Path | str) -> None:
    problems = text_problems(kb, folder)
    if problems:
        raise KnowledgeError(problems)
