"""Knowledge authoring (`python -m service knowledge manifest|cite|show`, service/knowledge/authoring.py):
rebuilt from the source texts, the manifest and every citation's span are exactly the committed ones,
so a changed text or a broken tool cannot pass unnoticed."""

from __future__ import annotations

from service.cli import main
from service.knowledge.loader import BUNDLED
from tests.knowledge_copies import knowledge_with


def test_manifest_and_cite_rebuild_the_committed_files(seeds_dir, tmp_path):
    folder = knowledge_with(tmp_path)
    (folder / "sources.yaml").write_text("sources: []\n")  # rebuilt from nothing
    citations = (folder / "citations.yaml").read_text()
    (folder / "citations.yaml").write_text(citations.replace('"sha256": "', '"sha256": "0'))  # every hash wrong
    assert main(["knowledge", "manifest", "--texts", str(seeds_dir), "--knowledge", str(folder)]) == 0
    assert main(["knowledge", "cite", "--texts", str(seeds_dir), "--knowledge", str(folder)]) == 0
    for name in ("sources.yaml", "citations.yaml"):
        assert (folder / name).read_bytes() == (BUNDLED / name).read_bytes(), name


def test_show_numbers_the_sentences_of_a_section(seeds_dir, capsys):
    assert main(["knowledge", "show", "--texts", str(seeds_dir), "000", "when_to_seek"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("p1 s1: ") and len(lines) > 3
    assert all(line.split(":", 1)[0].count(" ") == 1 for line in lines)  # "p<n> s<k>" before each sentence


def test_authoring_without_the_texts_or_with_a_wrong_section_is_a_usage_error(seeds_dir, capsys, monkeypatch):
    monkeypatch.delenv("TRIAGE_SOURCE_TEXTS_DIR", raising=False)
    assert main(["knowledge", "cite"]) == 2
    assert "source texts are needed" in capsys.readouterr().err
    assert main(["knowledge", "show", "--texts", str(seeds_dir), "000", "nowhere"]) == 2
    assert "no section 'nowhere'" in capsys.readouterr().err
