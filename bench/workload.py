"""The request mix every benchmark section uses: the clinical test scenarios, complete and partial.

A complete exam (every finding answered) is what the clinical tests send; a partial one (history,
hip and function left out) is what a busy clinician often sends, and it makes the engine work out
the questions still to ask. Both halves come from tests/clinical_cases.py, so the mix follows
the scenarios as they grow.
"""

from __future__ import annotations

import copy
from typing import Any

UNANSWERED_IN_PARTIAL = ("history", "hip", "function")


def scenario_mix() -> list[dict[str, Any]]:
    """Request bodies for POST /v1/triage: each core scenario complete, then partial."""
    from tests.clinical_cases import CASES
    from tests.scenarios import exam

    complete = [exam(case.changes) for case in CASES]
    partial = []
    for findings in complete:
        cut = copy.deepcopy(findings)
        for block in UNANSWERED_IN_PARTIAL:
            cut.pop(block, None)
        partial.append(cut)
    return [{"findings": f} for f in complete + partial]


def typical_request() -> dict[str, Any]:
    """The OpenAPI example: a partial exam with a weak leg raise, the answer size of a usual call."""
    from schemas.examples import TRIAGE_REQUEST

    return copy.deepcopy(TRIAGE_REQUEST)
