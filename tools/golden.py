"""Write the golden answers the refactors of issue 21 must keep byte-identical (tests/test_golden.py).

    python tools/golden.py            # rewrite tests/golden/{requests,answers}.jsonl

requests.jsonl: every case of examples/cases.jsonl, then every clinical scenario of
tests/clinical_cases.py as a POST /v1/triage body (so the
golden test imports no other test module). answers.jsonl: the exact body the service answers each
with, one line per request. Rewrite them only for a change meant to alter answers, and say so in the
commit; a refactor leaves them as they are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def requests() -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from tests.clinical_cases import CASES, POLICY_CASES
    from tests.scenarios import ADULT, exam

    found = [json.loads(line) for line in (ROOT / "examples" / "cases.jsonl").read_text().splitlines() if line]
    found += [{"findings": exam(case.changes), "patient": ADULT} for case in CASES]
    for case in POLICY_CASES:
        body = {"findings": exam(case.changes)}
        if case.patient:
            body["patient"] = case.patient
        found.append(body)
    return found


def answer_bytes(bodies: list[dict]) -> list[bytes]:
    """Each body's answer as the service sends it, through the app (its encoder, not the engine alone)."""
    from service import create_app

    client = create_app({"TESTING": True, "API_OPEN": True, "LOG_LEVEL": "ERROR"}).test_client()
    out = []
    for body in bodies:
        response = client.post("/v1/triage", json=body)
        if response.status_code != 200:
            raise SystemExit(f"a golden request was refused ({response.status_code}): {response.get_data()[:300]!r}")
        out.append(response.get_data())
    return out


def main() -> int:
    bodies = requests()
    answers = answer_bytes(bodies)
    GOLDEN.mkdir(exist_ok=True)
    (GOLDEN / "requests.jsonl").write_text("".join(json.dumps(b, sort_keys=True) + "\n" for b in bodies))
    (GOLDEN / "answers.jsonl").write_bytes(b"".join(a + b"\n" for a in answers))
    print(f"{len(bodies)} golden answers written to {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
