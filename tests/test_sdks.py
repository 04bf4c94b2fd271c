"""Clients generated from the committed openapi.yaml work against a live gunicorn.

Two generators an integrator would reach for: openapi-python-client (attrs models, httpx) and
openapi-generator-cli (the OpenAPI Generator jar, run on the machine's Java; pydantic models,
urllib3). Each client makes a triage call whose answer deserialises into typed models, and gets a
422 whose problem+json deserialises into the Problem model. Method names come from the
operationIds. The README's SDK snippet is the first test's calls.

Both generators' models silently drop keys they do not know (a misspelt finding never reaches the
server and its 422); the tests pin that, and the README tells integrators to build requests by
attribute, where a misspelling is a Python error.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.examples import TRIAGE_REQUEST
from service.auth.policy import key_hash
from tests.live import Replica, running

pytestmark = pytest.mark.sdk

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "openapi.yaml"
BIN = Path(sys.executable).parent
TIMEOUT = 300  # each generator run, in seconds
MISSPELT = {"findings": {"bladdr": "retention"}}
# Valid for both generators' models (they do not carry the schema's cross-field rule): the server's 422.
CONTRADICTION = {"findings": {"sensation": {"status": "normal", "areas": ["groin"]}}}
COMPACT = "citations=compact"  # the Prefer header's value for compact answers (README, "Compact answers")
API_KEY = "sdk-test-key-4c1f7a9e"  # the one key the server below accepts (triage and knowledge scopes)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """A live gunicorn with /v1 closed: the SDKs authenticate as the OpenAPI document declares."""
    folder = tmp_path_factory.mktemp("sdk")
    keys = folder / "keys.yaml"
    keys.write_text(f"keys:\n  - id: sdk\n    sha256: {key_hash(API_KEY)}\n    scopes: [triage, knowledge]\n")
    settings = {"WEB_CONCURRENCY": "1", "TRIAGE_API_OPEN": "false", "TRIAGE_API_KEYS_FILE": str(keys)}
    with running(folder, settings) as replica:
        yield replica


def generate(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def imported(package: str, folder: Path):
    """`package` imported from `folder` (and forgotten again afterwards by the caller's cleanup)."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    return importlib.import_module(package)


@pytest.fixture
def isolated_imports():
    before_path, before_modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = before_path
    for name in set(sys.modules) - before_modules:
        del sys.modules[name]


def test_openapi_python_client(server, tmp_path, isolated_imports):
    generate(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(SPEC), "--meta", "none",
         "--output-path", str(tmp_path / "triage_client")],
        tmp_path,
    )  # fmt: skip
    imported("triage_client", tmp_path)
    from triage_client import AuthenticatedClient, Client
    from triage_client.api.triage import triage
    from triage_client.models import (
        Findings,
        FindingsBladder,
        Problem,
        TriageRequest,
        TriageResponse,
        TriageResponseCompact,
    )

    # Without a credential: the 401 the document declares, typed as a Problem.
    anonymous = Client(base_url=server.url)
    refused = triage.sync(client=anonymous, body=TriageRequest.from_dict(TRIAGE_REQUEST))
    anonymous.get_httpx_client().close()
    assert isinstance(refused, Problem) and refused.status == 401
    client = AuthenticatedClient(base_url=server.url, token=API_KEY, prefix="", auth_header_name="X-API-Key")
    # The README's snippet: a request built by attribute, where a misspelt finding is a TypeError.
    snippet = triage.sync(client=client, body=TriageRequest(findings=Findings(bladder=FindingsBladder.RETENTION)))
    answer = triage.sync(client=client, body=TriageRequest.from_dict(TRIAGE_REQUEST))
    problem = triage.sync(client=client, body=TriageRequest.from_dict(CONTRADICTION))
    compact = triage.sync(client=client, body=TriageRequest.from_dict(TRIAGE_REQUEST), prefer=COMPACT)
    client.get_httpx_client().close()
    assert isinstance(snippet, TriageResponse) and snippet.triage.level.value == "emergency"
    with pytest.raises(TypeError):
        Findings(bladdr=FindingsBladder.RETENTION)
    assert isinstance(answer, TriageResponse)
    assert answer.triage.level.value == expected_level()
    assert answer.triage.citations[0].sha256 and answer.trace[0].rule and answer.knowledge.version
    assert answer.triage.citations[0].id and answer.triage.citations[0].title
    # Prefer: citations=compact, typed as the compact shape: ids, and each citation once in the map.
    assert isinstance(compact, TriageResponseCompact) and compact.triage.level == answer.triage.level
    assert compact.triage.citations == [c.id for c in answer.triage.citations]
    assert [compact.citations[c.id].sha256 for c in answer.triage.citations] == [
        c.sha256 for c in answer.triage.citations
    ]
    assert isinstance(problem, Problem) and problem.status == 422
    assert [e.field for e in problem.errors] == ["findings.sensation.areas"]

    # Its models drop keys they do not know: the README says to build requests by attribute.
    assert TriageRequest.from_dict(MISSPELT).to_dict() == {"findings": {}}


def test_openapi_generator_cli(server, tmp_path, isolated_imports):
    if shutil.which("java") is None:
        pytest.fail("openapi-generator-cli runs on Java (17 is on the machine)")
    generate(
        [str(BIN / "openapi-generator-cli"), "generate", "-i", str(SPEC), "-g", "python", "-o", str(tmp_path / "sdk"),
         "--package-name", "triage_sdk", "--additional-properties=projectName=triage-sdk"],
        tmp_path,
    )  # fmt: skip
    sdk = imported("triage_sdk", tmp_path / "sdk")
    anonymous = sdk.TriageApi(sdk.ApiClient(sdk.Configuration(host=server.url)))
    with pytest.raises(sdk.ApiException) as unauthenticated:  # the declared 401, typed as a Problem
        anonymous.triage(sdk.TriageRequest.from_dict(TRIAGE_REQUEST))
    assert unauthenticated.value.status == 401 and isinstance(unauthenticated.value.data, sdk.Problem)
    anonymous.api_client.rest_client.pool_manager.clear()
    api = sdk.TriageApi(sdk.ApiClient(sdk.Configuration(host=server.url, api_key={"apiKey": API_KEY})))

    # The 200 is oneOf the default and the compact shape: OpenAPI Generator wraps it, the answer is actual_instance.
    answer = api.triage(sdk.TriageRequest.from_dict(TRIAGE_REQUEST)).actual_instance
    assert isinstance(answer, sdk.TriageResponse)
    assert answer.triage.level == expected_level()
    assert answer.triage.citations[0].sha256 and answer.trace[0].rule and answer.knowledge.version
    assert answer.triage.citations[0].id and answer.triage.citations[0].title
    compact = api.triage(sdk.TriageRequest.from_dict(TRIAGE_REQUEST), prefer=COMPACT).actual_instance
    assert isinstance(compact, sdk.TriageResponseCompact) and compact.triage.level == answer.triage.level
    assert compact.triage.citations == [c.id for c in answer.triage.citations]
    assert [compact.citations[c.id].sha256 for c in answer.triage.citations] == [
        c.sha256 for c in answer.triage.citations
    ]

    with pytest.raises(sdk.ApiException) as refused:
        api.triage(sdk.TriageRequest.from_dict(CONTRADICTION))
    assert refused.value.status == 422 and isinstance(refused.value.data, sdk.Problem)
    assert [e.var_field for e in refused.value.data.errors] == ["findings.sensation.areas"]
    api.api_client.rest_client.pool_manager.clear()

    assert sdk.TriageRequest.from_dict(MISSPELT).to_dict() == {"findings": {}}  # dropped, as above


def expected_level() -> str:
    from service.engine import evaluate
    from service.knowledge import load_knowledge

    return evaluate(load_knowledge(), TRIAGE_REQUEST)["triage"]["level"]
