"""CDS Hooks under real gunicorn on loopback, with JWT verification and a stub FHIR server:
nothing a call says about the patient, and neither the client JWT nor the FHIR token, reaches the log."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fhir_cases import MAPPING, SYSTEMS, bundle, hook_call, observation, observations_for
from tests.fhir_stub import FhirStub
from tests.jwt_helpers import SigningKey, make_es384_key, mint
from tests.live import LOOPBACK, Replica, free_port, json_lines, request_id, running
from tests.scenarios import exam


def coded(section: str, having: str | None = None) -> str:
    """The bundled mapping's codes of a section (those with a key, if given) as a token search value."""
    tokens = [t for t, spec in MAPPING[section].items() if having is None or having in spec]
    return ",".join(f"{SYSTEMS[t.split('|')[0]]}|{t.split('|')[1]}" for t in tokens)


pytestmark = pytest.mark.live

ISSUER = "https://ehr.test.invalid/"
SERVICE = "/cds-services/leg-raise-triage"
TIMEOUT = 5  # seconds, for every request once the server is up


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, SigningKey, FhirStub]]:
    """gunicorn (production config) trusting one ES384 issuer and allowed to read one stub FHIR server."""
    folder: Path = tmp_path_factory.mktemp("cds")
    key = make_es384_key("k1")
    (folder / "jwks.json").write_text(json.dumps({"keys": [key.public_jwk()]}))
    (folder / "trust.yaml").write_text(f"issuers:\n  - iss: {ISSUER}\n    jwks_file: jwks.json\n")
    port = free_port()  # chosen first: the server's own URL is one of its settings
    with FhirStub() as stub:
        env = {
            "WEB_CONCURRENCY": "2",
            "TRIAGE_CDS_TRUST_FILE": str(folder / "trust.yaml"),
            "TRIAGE_PUBLIC_BASE_URL": f"http://{LOOPBACK}:{port}",
            "TRIAGE_CDS_FHIR_HOSTS": stub.host,
            "TRIAGE_CDS_FHIR_ALLOW_HTTP": "true",
        }
        with running(folder, env, port=port) as server:
            yield server, key, stub


def test_cds_calls_keep_patient_data_and_tokens_out_of_the_log(stack):
    server, key, stub = stack
    canary = f"CANARY-{uuid.uuid4().hex}"
    patient_id = canary
    fhir_token = f"fhir-token-{canary}"
    findings = exam({"bladder": "retention"})
    observations = observations_for(findings)
    for obs in observations:
        obs["id"] = f"{canary}-{obs['id']}"
        obs["subject"] = {"reference": f"Patient/{patient_id}"}
    unmapped = observation("triage|bladder-function", {"valueBoolean": True}, index=99)
    unmapped.update(
        id=f"{canary}-x",
        subject={"reference": f"Patient/{patient_id}"},
        code={"coding": [{"system": f"http://{canary}.example", "code": canary}], "text": f"note {canary}"},
    )
    context = {"userId": f"Practitioner/{canary}", "patientId": patient_id, "encounterId": canary}
    stub.add(f"Observation?patient={patient_id}&category=exam&_sort=-date&_count=100", bundle(observations))
    stub.add(f"Condition?patient={patient_id}&code={coded('conditions')}", bundle([]))
    vitals = f"Observation?patient={patient_id}&category=vital-signs&code={coded('observations', 'threshold')}"
    stub.add(vitals + "&_sort=-date&_count=100", bundle([]))
    tokens: list[str] = []

    def send(path: str, body: object, token: str | None = None) -> requests.Response:
        if token is None:
            token = mint(key, iss=ISSUER, aud=server.url + path)
        tokens.append(token)
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id(f"cds-canary-{len(tokens)}")}
        return requests.post(server.url + path, json=body, headers=headers, timeout=TIMEOUT)

    prefetched = hook_call(
        {"patient": None, "observations": bundle([*observations, unmapped]), "conditions": None},
        context=context,
        hookInstance=canary,
    )
    fetched = hook_call(
        None,
        context=context,
        fhirServer=stub.base_url,
        fhirAuthorization={
            "access_token": fhir_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": f"patient/Observation.read {canary}",
            "subject": canary,
        },
    )
    fetched["prefetch"] = {"patient": None}
    answered = send(SERVICE, prefetched)
    assert answered.status_code == 200, answered.text
    card = answered.json()["cards"][0]
    assert card["indicator"] == "critical"  # 000 'When to Seek Professional Guidance' p2
    assert (
        canary.removeprefix("CANARY-") in card["detail"]
    )  # the unmapped record is reported back to the EHR (escaped), not logged
    assert send(SERVICE, fetched).status_code == 200
    assert stub.requests and stub.requests[-1].headers["Authorization"] == f"Bearer {fhir_token}"
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"userComment": f"patient said {canary}"},
                "outcomeTimestamp": "2026-11-22T10:05:31Z",
            }
        ]
    }
    assert send(SERVICE + "/feedback", feedback).status_code == 200
    assert send(SERVICE, {**prefetched, canary: canary}).status_code == 422
    assert send(SERVICE, {**prefetched, "hook": canary}).status_code == 422
    assert send(SERVICE, prefetched, token=f"{canary}.{canary}.{canary}").status_code == 401
    wrong_aud = mint(key, iss=ISSUER, aud=f"{server.url}/{canary}")
    assert send(SERVICE, prefetched, token=wrong_aud).status_code == 401

    deadline = time.monotonic() + 5
    while True:
        text = server.log_text()
        events = json_lines(text, strict=True)
        logged = {e.get("request_id") for e in events if e.get("event") == "request"}
        if len(logged & {request_id(f"cds-canary-{i}") for i in range(1, len(tokens) + 1)}) == len(tokens):
            break
        assert time.monotonic() < deadline, "not every call was logged"
        time.sleep(0.2)
    assert {"cds_decision", "cds_feedback", "cds_auth_rejected"} <= {e.get("event") for e in events}
    assert canary.removeprefix("CANARY-") not in text, "request content leaked into the log"
    for token in tokens:
        assert token.split(".")[-1] not in text, "a client JWT reached the log"
    assert fhir_token.removesuffix(canary) not in text
