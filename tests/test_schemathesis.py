"""Schemathesis against the service under real gunicorn on loopback, from the committed openapi.yaml.

Positive and negative cases (examples, coverage and fuzzing phases), every default check, bounded and
deterministic. One test per operation: a failure shows schemathesis' report with a curl line to replay it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from tests.live import REQUEST_TIMEOUT, ROOT, json_lines, running

pytestmark = pytest.mark.live

MAX_EXAMPLES = 40
SERVICE_ID = "leg-raise-triage"  # the one CDS service (service/cds/services.py)
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _spec_as_served() -> dict[str, Any]:
    """openapi.yaml as committed, minus the CDS Hooks JWT requirement.

    The server below runs with TRIAGE_CDS_AUTH_DISABLED (JWT refusals are tested in test_cds_trust.py and
    test_cds_gunicorn.py), so `security` would only make the ignored_auth, missing_required_header and
    negative_data_rejection checks expect a 401 this server is configured not to give. Nothing else changes.
    """
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                operation.pop("security", None)
    return spec


# fhirServer is `format: url` (apispec's name for marshmallow's Url field, http/https only), a format
# schemathesis does not know: without this it sends arbitrary strings as valid URLs (the document's own
# pattern and minLength now rule out "", issue 20). Hosts
# with a top-level label of 2+ characters or no dot, as marshmallow's URL validator requires.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?"
schemathesis.openapi.format(
    "url",
    st.from_regex(
        rf"\Ahttps?://(?:{_LABEL}\.){{0,3}}[a-z][a-z0-9]{{1,8}}(?::[0-9]{{2,5}})?(?:/[A-Za-z0-9._~-]{{1,12}}){{0,3}}\Z"
    ),
)

POSITIVE_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},  # positive + negative
        # A random service id only ever gets 404 (after the body is validated); the real one reaches the engine.
        "parameters": {"service_id": SERVICE_ID},
        "operations": [
            {
                # 412 is CDS Hooks' answer to a valid call whose prefetch is missing when no FHIR server can be
                # read (none is allowed here): documented, and not a rejection of the request's shape.
                "include-operation-id": "cdsTriage",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_ACCEPTED, "412"]}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(_spec_as_served(), config=CONFIG)


# --- a real gunicorn with the production config on loopback ------------------------------------------
@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"WEB_CONCURRENCY": "2", "TRIAGE_CDS_AUTH_DISABLED": "true", "LOG_LEVEL": "WARNING"}
    # clean_env: no inherited TRIAGE_* setting; /v1 is open without credentials (loopback only, see live.py)
    with running(tmp_path_factory.mktemp("gunicorn-schemathesis"), env, clean_env=True) as server:
        yield server.url
    errors = [e for e in json_lines(server.log_text(), strict=True) if e.get("level") in ("error", "critical")]
    assert not errors, f"the server logged errors: {errors[:5]}"  # a 500, a dead worker


@pytest.fixture(scope="module")
def session(live_url: str) -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@schema.parametrize()
def test_api_conforms_to_openapi_yaml(case: schemathesis.Case, live_url: str, session: requests.Session) -> None:
    case.call_and_validate(base_url=live_url, session=session, timeout=REQUEST_TIMEOUT)
