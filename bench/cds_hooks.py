"""CDS Hooks latency under the production gunicorn config, beside POST /v1/triage as the yardstick.

A typical call: JWT verification on (ES384, keys from a file), a prefetch with the Patient, one
Observation per answered finding (about 35) and a Condition. The yardstick is /v1/triage with the
same findings as JSON, in the same server and run. Requests are sequential over one keep-alive
connection, so the figures are the service's own latency, not queueing.

    python -m bench.cds_hooks [--requests N] [--rounds N] [--out FILE]   # this section alone
    python -m bench                                                     # in the full report (make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from bench.http import SERVICE_APP, Gunicorn, MeasurementError, free_port

ISSUER = "https://ehr.bench.invalid/"
KID = "bench-key"
SPEC_TARGET_MS = 500.0  # CDS Hooks 2.0.1: services should answer on the order of 500 ms


def _typical_findings() -> dict[str, Any]:
    from tests.scenarios import exam

    return exam({"slr.result": "weak", "slr.side": "left", "pain.locations": ["low_back", "anterior_thigh"]})


def _typical_call(findings: dict[str, Any]) -> dict[str, Any]:
    from tests.fhir_cases import call_for

    condition = {
        "resourceType": "Condition",
        "id": "c-1",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]},
        "subject": {"reference": "Patient/pat-1"},
    }
    return call_for(findings, [condition])


class Server:
    """gunicorn as deployed (bench.http.Gunicorn) with a JWT trust file for one signing key."""

    def __init__(self, workdir: Path):
        key = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        (workdir / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": KID, "alg": "ES384", "use": "sig"}]}))
        (workdir / "trust.yaml").write_text(f"issuers:\n  - iss: {ISSUER}\n    jwks_file: jwks.json\n")
        self.key = key
        self.gunicorn = Gunicorn(SERVICE_APP, workdir, name="cds", port=free_port())
        self.url = self.gunicorn.url
        self.gunicorn.env = {
            "TRIAGE_CDS_TRUST_FILE": str(workdir / "trust.yaml"),
            "TRIAGE_PUBLIC_BASE_URL": self.url,
        }
        self.gunicorn.start()
        self.cold_start_s = self.gunicorn.cold_start_s

    def token(self, path: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": self.url + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})

    def stop(self) -> None:
        self.gunicorn.stop()


def _timed(send: Callable[[], requests.Response], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = send()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise MeasurementError(f"benchmark call answered {response.status_code}: {response.text[:300]}")
        times.append(elapsed)
    return times


def _stats(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {"p50": statistics.median(ordered), "p90": pct(90), "p99": pct(99), "max": ordered[-1]}


def run(requests_per_round: int = 300, rounds: int = 3) -> dict[str, Any]:
    findings = _typical_findings()
    call = _typical_call(findings)
    path = "/cds-services/leg-raise-triage"
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            session = requests.Session()
            tokens = iter([server.token(path) for _ in range(rounds * requests_per_round + 20)])

            def cds() -> requests.Response:
                headers = {"Authorization": f"Bearer {next(tokens)}"}
                return session.post(server.url + path, json=call, headers=headers, timeout=10)

            def triage() -> requests.Response:
                return session.post(server.url + "/v1/triage", json={"findings": findings}, timeout=10)

            _timed(cds, 10)  # warm up both workers' caches and the connection
            _timed(triage, 10)
            cds_times: list[float] = []
            triage_times: list[float] = []
            for _ in range(rounds):  # alternate so drift on a shared machine hits both alike
                cds_times += _timed(cds, requests_per_round)
                triage_times += _timed(triage, requests_per_round)
            body_bytes = len(json.dumps(call).encode())
            cold = server.cold_start_s
        finally:
            server.stop()
    return {
        "cds": _stats(cds_times),
        "triage": _stats(triage_times),
        "requests": len(cds_times),
        "prefetch_bytes": body_bytes,
        "observations": len(call["prefetch"]["observations"]["entry"]),
        "cold_start_s": cold,
    }


def report(result: dict[str, Any]) -> str:
    cds, triage = result["cds"], result["triage"]
    rows = "\n".join(
        f"| {name} | {cds[name]:.2f} | {triage[name]:.2f} | {cds[name] / triage[name]:.2f} |"
        for name in ("p50", "p90", "p99", "max")
    )
    return f"""# Performance

Generated by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()},
{platform.machine()}, {os.cpu_count()} CPUs. The machine is shared: read the ratios, not the absolute figures.

## CDS Hooks call latency

A typical `patient-view` call through the production gunicorn config with JWT verification on:
{result["observations"]} Observations, a Patient and a Condition in the prefetch ({result["prefetch_bytes"]} bytes),
{result["requests"]} sequential calls over one keep-alive connection, alternating in rounds with
`POST /v1/triage` on the same findings (the yardstick). Milliseconds, client side, loopback.

| percentile | CDS Hooks call | /v1/triage | ratio |
|---|---|---|---|
{rows}

The spec asks for answers on the order of {SPEC_TARGET_MS:.0f} ms, EHR included; the service's p99 is
{cds["p99"]:.1f} ms ({cds["p99"] / SPEC_TARGET_MS:.1%} of that). Cold start to the first 200 from `/readyz`:
{result["cold_start_s"]:.2f} s.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="calls per round and endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the markdown here (make bench writes the full report)")
    args = parser.parse_args(argv)
    text = report(run(args.requests, args.rounds))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
