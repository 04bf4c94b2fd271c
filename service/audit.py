"""One audit event per decision: what was decided and on which knowledge, never the findings themselves."""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

from service.jsoncodec import canonical_json
from service.logs.setup import log
from service.metrics import record_decision


def findings_fingerprint(request: dict[str, Any], key: str = "") -> str:
    """A stable fingerprint of the canonical request (sorted keys, no whitespace).

    Equal findings give equal fingerprints, so a decision can be matched to a re-run without
    storing the findings. With a key it is an HMAC; without one, a plain SHA-256 (reversible by
    trying every combination of findings, hence AUDIT_HASH_KEY in production).
    """
    canonical = canonical_json(request)
    if key:
        keyed = _keyed(key).copy()
        keyed.update(canonical)
        return "hmac-sha256:" + keyed.hexdigest()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


@functools.lru_cache(maxsize=4)
def _keyed(key: str) -> hmac.HMAC:
    # The key schedule once per key rather than per decision; copies are independent.
    return hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)


def audit_decision(channel: str, request: dict[str, Any], result: dict[str, Any], key: str = "") -> None:
    """Log the decision (request id comes from the log context) and count it in the metrics."""
    triage, knowledge = result["triage"], result["knowledge"]
    log.info(
        "triage_decision",
        channel=channel,
        triage_level=triage["level"],
        provisional=triage["provisional"],
        rules=[entry["rule"] for entry in result["trace"]],  # the trace's rules, in its order
        knowledge_version=knowledge["version"],
        knowledge_sha256=knowledge["sha256"],
        findings_fingerprint=findings_fingerprint(request, key),
    )
    record_decision(triage["level"], channel, knowledge["version"])
