"""The golden answers: every example case and clinical scenario answered byte for byte as recorded.

tests/golden/answers.jsonl holds the exact bodies of POST /v1/triage for tests/golden/requests.jsonl
(written by `python tools/golden.py`). A refactor leaves every byte as it is; a change meant to alter
answers rewrites them with the tool, and the diff shows what changed.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_every_golden_answer_is_byte_identical(client):
    requests = (GOLDEN / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    answers = (GOLDEN / "answers.jsonl").read_bytes().splitlines()
    assert len(requests) == len(answers) > 200
    for number, (request, expected) in enumerate(zip(requests, answers, strict=True), start=1):
        response = client.post("/v1/triage", json=json.loads(request))
        assert response.status_code == 200, (number, response.get_data()[:300])
        got = response.get_data()
        if got != expected:
            was, now = (json.dumps(json.loads(b), indent=1).splitlines() for b in (expected, got))
            diff = "\n".join(list(difflib.unified_diff(was, now, "golden", "now", lineterm="", n=2))[:60])
            raise AssertionError(f"golden answer {number} changed (tools/golden.py rewrites them):\n{diff}")
