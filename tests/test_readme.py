"""Every curl example in the README and the guides under docs/ runs against a live gunicorn, and what
they show is checked.

An example is a ```sh block with one curl command. A `# STATUS CONTENT-TYPE` comment in it gives
the expected status and media type (200 application/json when absent); a ```json block right after
it (only prose between) is the answer shown. In a shown answer "..." stands for what is left out:
as a value it matches anything, at the end of a string the rest of a longer text, as a key
("...": "...") it allows the object's other keys, and as the last item of a list it allows more
items. Everything else must match exactly.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.live import Replica, running

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The README and the guides it points to, in reading order (an example may use the card received by an
# earlier one in the same document).
DOCUMENTS = (
    README,
    ROOT / "docs" / "rest-api.md",
    ROOT / "docs" / "ehr-integration.md",
    ROOT / "docs" / "deployment.md",
    ROOT / "docs" / "knowledge-authoring.md",
    ROOT / "docs" / "clinical-safety" / "README.md",
)
SHOWN_HOST = "http://127.0.0.1:8000"
LEFT_OUT = "..."
CARD_UUID = "<card uuid>"  # the feedback example names the card it answers: the one just received
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
STATUS = re.compile(r"^# (\d{3}) ([\w.+-]+/[\w.+-]+)", re.M)  # "# 422 application/problem+json"


@dataclass
class Example:
    document: str
    line: int
    script: str
    status: int
    media_type: str
    shown: Any  # the answer as shown, or None


def examples(path: Path = README) -> list[Example]:
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(ROOT))
    blocks = list(FENCE.finditer(text))
    found = []
    for i, block in enumerate(blocks):
        language, body = block.group(1), block.group(2)
        if language != "sh" or "curl " not in body:
            continue
        assert body.count("curl ") == 1, f"{name} line {_line(text, block)}: one curl command per example"
        status = STATUS.search(body)
        shown = None
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following is not None and following.group(1) == "json":
            between = text[block.end() : following.start()]
            if "```" not in between and between.count("\n") < 6:
                shown = json.loads(following.group(2))
        found.append(
            Example(
                name,
                _line(text, block),
                body,
                int(status.group(1)) if status else 200,
                status.group(2) if status else "application/json",
                shown,
            )
        )
    return found


def _line(text: str, block: re.Match) -> int:
    return text.count("\n", 0, block.start()) + 1


def matches(shown: Any, actual: Any, where: str = "$") -> list[str]:
    """Where `actual` differs from the shown answer (empty if it matches)."""
    if shown == LEFT_OUT:
        return []
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{where}: not an object"]
        problems = []
        for key, value in shown.items():
            if key == LEFT_OUT:
                continue
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += matches(value, actual[key], f"{where}.{key}")
        extra = set(actual) - set(shown)
        if extra and LEFT_OUT not in shown:
            problems.append(f"{where}: keys not shown: {sorted(extra)}")
        return problems
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return [f"{where}: not a list"]
        more = bool(shown) and shown[-1] == LEFT_OUT
        items = shown[:-1] if more else shown
        if len(actual) < len(items) or (not more and len(actual) != len(items)):
            return [f"{where}: {len(actual)} items, shown {len(items)}{' or more' if more else ''}"]
        return [p for n, item in enumerate(items) for p in matches(item, actual[n], f"{where}[{n}]")]
    shortened = isinstance(shown, str) and shown.endswith(LEFT_OUT) and isinstance(actual, str)
    if shortened and actual.startswith(shown.removesuffix(LEFT_OUT).rstrip()):
        return []
    return [] if shown == actual else [f"{where}: {actual!r}, shown {shown!r}"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    overrides = {"WEB_CONCURRENCY": "1", "TRIAGE_CDS_AUTH_DISABLED": "true", "TRIAGE_DOCS_OPEN": "true"}
    with running(tmp_path_factory.mktemp("readme"), overrides) as replica:
        yield replica


def test_the_readme_and_guides_have_their_curl_examples():
    assert examples(README), "the README shows one call"
    found = [e for path in DOCUMENTS for e in examples(path)]
    assert len(found) >= 7
    assert sum(e.shown is not None for e in found) >= 6


@pytest.mark.live
@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name if path != README else "README")
def test_every_curl_example_answers_as_shown(server, document):
    last_card = None
    for example in examples(document):
        script = example.script.replace(SHOWN_HOST, server.url)
        if CARD_UUID in script:
            assert last_card, f"{example.document} line {example.line}: no card received before the feedback example"
            script = script.replace(CARD_UUID, last_card)
        # The example as written, with curl told to add the status and media type after the body.
        wrapped = "curl() { command curl -w '\\n%{http_code} %{content_type}' --max-time 20 \"$@\"; }\n" + script
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", wrapped], capture_output=True, text=True, timeout=60)
        where = f"{example.document} line {example.line}"
        assert done.returncode == 0, f"{where}: {done.stderr}"
        body, _, tail = done.stdout.rpartition("\n")
        status, _, media_type = tail.partition(" ")
        assert int(status) == example.status, f"{where}: {status} {body[:300]}"
        assert media_type.split(";")[0] == example.media_type, where
        answer = json.loads(body) if body else None
        if example.shown is not None:
            assert not (problems := matches(example.shown, answer)), f"{where}: " + "; ".join(problems)
        if isinstance(answer, dict) and answer.get("cards"):
            last_card = answer["cards"][0]["uuid"]


@pytest.mark.parametrize(
    ("shown", "actual", "ok"),
    [
        ({"a": 1, "...": "..."}, {"a": 1, "b": 2}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),  # a key not shown, and no "..." key
        ({"a": "..."}, {"a": [1, 2]}, True),
        ([1, "..."], [1, 2, 3], True),
        ([1, 2], [1, 2, 3], False),
        ([1, 3, "..."], [1, 2, 3], False),
        ({"a": {"b": 1}}, {"a": {"b": 2}}, False),
        ("Send the patient ...", "Send the patient now.", True),
        ("Send the patient ...", "Keep the patient.", False),
    ],
)
def test_the_matcher_allows_only_what_is_left_out(shown, actual, ok):
    assert (not matches(shown, actual)) is ok
