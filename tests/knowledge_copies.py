"""Copies of the bundled knowledge base, as they are or with one file edited, for tests that load or author it."""

from __future__ import annotations

import shutil
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "service" / "knowledge"


def knowledge_with(tmp_path: Path, file: str = "rules.yaml", old: str = "", new: str = "", append: str = "") -> Path:
    """A copy of the bundled knowledge in tmp_path/knowledge, with `old` replaced by `new` once in
    `file` (which must contain it) and `append` added at its end."""
    folder = tmp_path / "knowledge"
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = folder / file
    text = path.read_text()
    if old:
        assert old in text, f"{file} no longer holds {old!r}"
        text = text.replace(old, new, 1)
    path.write_text(text + append)
    return folder
