"""Access control, response hardening, CORS, the audit event and the metrics, through the Flask test client.

Apps are built per test with `create_app({...})`; keys and trust files live in tmp_path; JWTs are signed
here (tests/jwt_helpers.py) and verified against a local JWK Set file, so nothing leaves the process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from schemas.examples import TRIAGE_REQUEST
from service import create_app
from service.audit import findings_fingerprint
from service.auth.guard import ROUTE_SCOPES, route_template
from service.auth.policy import key_hash
from service.routes.docs import DOCS_POLICY
from tests.helpers import assert_problem, make_app, preflight
from tests.jwt_helpers import SigningKey, make_es384_key, make_rs384_key, mint
from tests.live import request_id
from tests.logcapture import all_logged, events

TRIAGE_KEY = "tk_live_0f3c9a1e7b5d4c2a8e6f0b1d3c5a7e9f"  # the key texts: must never be logged or echoed
ROTATED_KEY = "tk_live_rotated_5e8d2c4b6a0f1e3d7c9b"
KNOWLEDGE_KEY = "tk_live_knowledge_a1b2c3d4e5f60718"
REVOKED_KEY = "tk_live_revoked_9c8b7a6f5e4d3c2b1a00"
ISS = "https://idp.example.org"
AUD = "https://triage.example.org"
ORIGIN = "https://app.example.org"
RULE = "LV-BASELINE"


# --- helpers ---------------------------------------------------------------------------------------
def assert_401(response: Any) -> None:
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def write_keys(folder: Path, entries: list[dict[str, Any]], name: str = "keys.yaml") -> str:
    path = folder / name
    path.write_text(yaml.safe_dump({"keys": entries}), encoding="utf-8")
    return str(path)


def key_entry(key_id: str, key: str, scopes: list[str], revoked: bool = False) -> dict[str, Any]:
    return {"id": key_id, "sha256": key_hash(key), "scopes": scopes, "revoked": revoked}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- 1. default config: nothing but the probes answers ---------------------------------------------
PROTECTED = [
    ("POST", "/v1/triage"),
    ("GET", "/v1/knowledge"),
    ("GET", f"/v1/rules/{RULE}"),
    ("GET", "/v1/sources"),
    ("GET", "/v1/sources/000"),
    ("GET", "/v1/citations/000.seek.ces_bladder_bowel"),
]


@pytest.fixture(scope="module")
def closed() -> flask.testing.FlaskClient:
    return make_app().test_client()


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_default_config_refuses_v1_without_credentials(closed, method, path):
    response = closed.open(path, method=method, json=TRIAGE_REQUEST if method == "POST" else None)
    assert_401(response)
    assert "triage" not in response.get_json()  # no answer leaked with the refusal


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_probes_are_open(closed, path):
    assert closed.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json", "/openapi.yaml"])
def test_metrics_and_docs_closed_by_default(closed, path):
    assert_401(closed.get(path))


@pytest.mark.parametrize(
    ("flag", "path"),
    [("METRICS_OPEN", "/metrics"), ("DOCS_OPEN", "/openapi.json"), ("DOCS_OPEN", "/openapi.yaml")],
)
def test_metrics_and_docs_open_when_configured(flag, path):
    client = make_app(**{flag: True}).test_client()
    assert client.get(path).status_code == 200
    # Opening one does not open the other, nor /v1.
    other = "/openapi.json" if flag == "METRICS_OPEN" else "/metrics"
    assert_401(client.get(other))
    assert_401(client.get("/v1/knowledge"))


def test_api_keys_can_hold_the_metrics_and_docs_scopes(tmp_path):
    keys = write_keys(tmp_path, [key_entry("ops", TRIAGE_KEY, ["metrics", "docs"])])
    client = make_app(API_KEYS_FILE=keys).test_client()
    for path in ("/metrics", "/openapi.json", "/openapi.yaml"):
        assert client.get(path, headers={"X-API-Key": TRIAGE_KEY}).status_code == 200, path
    assert_problem(client.get("/v1/knowledge", headers={"X-API-Key": TRIAGE_KEY}), 403)


# --- 2. API keys -----------------------------------------------------------------------------------
@pytest.fixture
def keyed(tmp_path: Path) -> flask.testing.FlaskClient:
    keys = write_keys(
        tmp_path,
        [
            key_entry("triage-2025", TRIAGE_KEY, ["triage"]),
            key_entry("triage-2026", ROTATED_KEY, ["triage"]),
            key_entry("reader", KNOWLEDGE_KEY, ["knowledge"]),
            key_entry("old-laptop", REVOKED_KEY, ["triage", "knowledge"], revoked=True),
        ],
    )
    return make_app(API_KEYS_FILE=keys).test_client()


def test_key_with_triage_scope_may_triage_but_not_read_knowledge(keyed, logs):
    headers = {"X-API-Key": TRIAGE_KEY}
    response = keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["triage"]["level"]
    for path in ("/v1/knowledge", f"/v1/rules/{RULE}", "/v1/sources", "/v1/citations/000.seek.ces_bladder_bowel"):
        body = assert_problem(keyed.get(path, headers=headers), 403)
        assert "knowledge" in body["detail"]
    [*_, denied] = events(logs, "access_denied")
    assert denied["status"] == 403
    assert denied["reason"] == "scope"
    assert denied["required"] == "knowledge"
    assert denied["caller"] == "triage-2025"


def test_knowledge_key_reads_knowledge_but_may_not_triage(keyed):
    headers = {"X-API-Key": KNOWLEDGE_KEY}
    assert keyed.get("/v1/knowledge", headers=headers).status_code == 200
    assert keyed.get(f"/v1/rules/{RULE}", headers=headers).status_code == 200
    assert keyed.get("/v1/citations/000.seek.ces_bladder_bowel", headers=headers).status_code == 200
    assert_problem(keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers=headers), 403)


def test_rotated_key_works_alongside_the_old_one(keyed):
    for key in (TRIAGE_KEY, ROTATED_KEY):
        response = keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers={"X-API-Key": key})
        assert response.status_code == 200


@pytest.mark.parametrize(
    "presented",
    [
        "tk_live_wrong",
        "",
        TRIAGE_KEY.upper(),
        TRIAGE_KEY + " ",
        key_hash(TRIAGE_KEY),  # the stored hash is not a key
    ],
    ids=["wrong", "empty", "case", "trailing-space", "the-hash"],
)
def test_wrong_key_is_401(keyed, logs, presented):
    assert_401(keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers={"X-API-Key": presented}))
    [denied] = events(logs, "access_denied")
    assert denied["status"] == 401
    assert denied["reason"] == "unknown_key"
    assert denied["key_id"] is None


def test_no_key_is_401_missing(keyed, logs):
    assert_401(keyed.post("/v1/triage", json=TRIAGE_REQUEST))
    [denied] = events(logs, "access_denied")
    assert denied["reason"] == "missing"
    assert denied["route"] == "/v1/triage"


def test_revoked_key_is_401_and_named_in_the_log(keyed, logs):
    response = keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers={"X-API-Key": REVOKED_KEY})
    assert_401(response)
    [denied] = events(logs, "access_denied")
    assert denied["status"] == 401
    assert denied["reason"] == "revoked_key"
    assert denied["key_id"] == "old-laptop"
    assert not events(logs, "triage_decision")


def test_key_text_never_logged_nor_echoed(keyed, logs):
    responses = [
        keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers={"X-API-Key": TRIAGE_KEY}),
        keyed.get("/v1/knowledge", headers={"X-API-Key": TRIAGE_KEY}),
        keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers={"X-API-Key": REVOKED_KEY}),
        keyed.post("/v1/triage", json=TRIAGE_REQUEST, headers={"X-API-Key": TRIAGE_KEY + "x"}),
    ]
    assert [r.status_code for r in responses] == [200, 403, 401, 401]
    logged = all_logged(logs)
    assert events(logs, "access_denied")  # the log was captured at all
    for secret in (TRIAGE_KEY, REVOKED_KEY, key_hash(TRIAGE_KEY), key_hash(REVOKED_KEY)):
        assert secret not in logged
        for response in responses:
            assert secret not in response.get_data(as_text=True)
            assert all(secret not in value for _, value in response.headers.items())


def test_key_is_checked_before_the_body(keyed):
    """An unauthenticated caller learns nothing about the schema (401, not 422)."""
    assert_401(keyed.post("/v1/triage", json={"findings": {"bladder": "bogus"}}, headers={"X-API-Key": "nope"}))


GOOD_DIGEST = key_hash("whatever")


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        pytest.param([{"id": "a", "scopes": ["triage"]}], "keys[0].sha256: required key missing", id="missing-sha256"),
        pytest.param(
            [{"id": "a", "sha256": "z" * 64, "scopes": ["triage"]}],
            "keys[0].sha256: must be 64 lower-case hex",
            id="non-hex",
        ),
        pytest.param(
            [{"id": "a", "sha256": GOOD_DIGEST[:40], "scopes": ["triage"]}],
            "keys[0].sha256: must be 64 lower-case hex",
            id="short",
        ),
        pytest.param(
            [{"id": "a", "sha256": GOOD_DIGEST, "scopes": ["admin"]}],
            "keys[0].scopes[0]: must be one of",
            id="unknown-scope",
        ),
        pytest.param(
            [{"id": "a", "sha256": GOOD_DIGEST, "scopes": []}], "keys[0].scopes: must be a non-empty", id="no-scope"
        ),
        pytest.param(
            [
                {"id": "a", "sha256": GOOD_DIGEST, "scopes": ["triage"]},
                {"id": "a", "sha256": key_hash("other"), "scopes": ["triage"]},
            ],
            "keys[1].id: used by another key too",
            id="duplicate-id",
        ),
        pytest.param(
            [{"id": "a", "sha256": GOOD_DIGEST, "scopes": ["triage"], "key": "plaintext-secret-123"}],
            "keys[0].key: unknown key",
            id="extra-field",
        ),
        pytest.param(
            [{"id": "a", "sha256": GOOD_DIGEST, "scopes": ["triage"], "revoked": "yes"}],
            "keys[0].revoked: must be true or false",
            id="revoked-not-bool",
        ),
        pytest.param(
            [{"id": "a b", "sha256": GOOD_DIGEST, "scopes": ["triage"]}], "keys[0].id: must match", id="bad-id"
        ),
    ],
)
def test_invalid_keys_file_is_refused_at_start(tmp_path, entries, problem):
    path = write_keys(tmp_path, entries)
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        make_app(API_KEYS_FILE=path)
    assert path in str(raised.value)
    assert "plaintext-secret-123" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "keys.yaml: must be a mapping"),
        ("keys: {}", "keys.yaml: keys: must be a list (line 1)"),
        ("keys: []\nextra: 1", "keys.yaml: extra: unknown key (line 2)"),
        ("keys: []\nkeys: []", "keys.yaml: keys: duplicate key (lines 1 and 2)"),
        ("keys: [\n", "not valid YAML"),
    ],
    ids=["list", "keys-not-a-list", "extra-top-level", "duplicate-yaml-key", "broken-yaml"],
)
def test_malformed_keys_file_is_refused_at_start(tmp_path, text, problem):
    path = tmp_path / "keys.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(problem)):
        make_app(API_KEYS_FILE=str(path))


def test_missing_keys_file_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        make_app(API_KEYS_FILE=str(tmp_path / "absent.yaml"))


# --- 3. bearer JWTs --------------------------------------------------------------------------------
class Jwt:
    def __init__(self, folder: Path):
        self.es = make_es384_key("es-1")
        self.rs = make_rs384_key("rs-1")
        (folder / "jwks.json").write_text(json.dumps({"keys": [self.es.public_jwk(), self.rs.public_jwk()]}))
        (folder / "trust.yaml").write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks_file": "jwks.json"}]}))
        self.trust_file = str(folder / "trust.yaml")

    def token(self, key: SigningKey | None = None, *, scope: str | None = "triage knowledge", **kwargs: Any) -> str:
        claims = {"sub": "client-42", "scope": scope, **kwargs.pop("claims", {})}
        return mint(key or self.es, iss=kwargs.pop("iss", ISS), aud=kwargs.pop("aud", AUD), claims=claims, **kwargs)


@pytest.fixture(scope="module")
def jwt_setup(tmp_path_factory: pytest.TempPathFactory) -> Jwt:
    return Jwt(tmp_path_factory.mktemp("jwt"))


@pytest.fixture(scope="module")
def jwt_client(jwt_setup: Jwt) -> flask.testing.FlaskClient:
    return make_app(API_JWT_TRUST_FILE=jwt_setup.trust_file, API_JWT_AUDIENCE=AUD).test_client()


def test_es384_token_with_both_scopes(jwt_client, jwt_setup):
    headers = bearer(jwt_setup.token())
    assert jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=headers).status_code == 200
    assert jwt_client.get("/v1/knowledge", headers=headers).status_code == 200


def test_rs384_token(jwt_client, jwt_setup):
    headers = bearer(jwt_setup.token(jwt_setup.rs))
    assert jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=headers).status_code == 200


def test_scp_list_is_accepted(jwt_client, jwt_setup):
    headers = bearer(jwt_setup.token(scope=None, claims={"scp": ["knowledge"]}))
    assert jwt_client.get("/v1/knowledge", headers=headers).status_code == 200
    assert_problem(jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=headers), 403)


def test_access_token_may_be_reused(jwt_client, jwt_setup):
    headers = bearer(jwt_setup.token())
    for _ in range(3):
        response = jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("scope", [None, "", "knowledge", "triage:write admin"], ids=["none", "empty", "other", "junk"])
def test_token_without_triage_scope_is_403(jwt_client, jwt_setup, logs, scope):
    response = jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=bearer(jwt_setup.token(scope=scope)))
    assert_problem(response, 403)
    [denied] = events(logs, "access_denied")
    assert denied["reason"] == "scope"
    assert denied["caller"] == f"jwt:{ISS}"


def _alg_none(setup: Jwt) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": "j-none", "scope": "triage"}
    return unsigned_token({"alg": "none", "typ": "JWT", "kid": setup.es.kid}, claims)


def _hs256(setup: Jwt) -> str:
    """Signed with HMAC over the issuer's public key (the classic algorithm-confusion attack)."""
    import hashlib
    import hmac

    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": "j-hs", "scope": "triage"}
    unsigned = unsigned_token({"alg": "HS256", "typ": "JWT", "kid": setup.es.kid}, claims).rsplit(".", 1)[0]
    secret = json.dumps(setup.es.public_jwk()).encode()
    signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(signature)}"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(lambda s: s.token(now=time.time() - 3600), "jwt_expired", id="expired"),
        pytest.param(lambda s: s.token(aud="https://other.example.org"), "jwt_audience", id="wrong-aud"),
        pytest.param(lambda s: s.token(iss="https://evil.example.org"), "jwt_issuer", id="unknown-iss"),
        pytest.param(lambda s: s.token(make_es384_key("es-1")), "jwt_signature", id="foreign-key-same-kid"),
        pytest.param(lambda s: s.token(lifetime=7200), "jwt_lifetime", id="too-long-lived"),
        pytest.param(_alg_none, "jwt_alg", id="alg-none"),
        pytest.param(_hs256, "jwt_alg", id="hs256"),
        pytest.param(lambda s: "not-a-jwt", "jwt_malformed", id="garbage"),
    ],
)
def test_bad_tokens_are_401(jwt_client, jwt_setup, logs, build, reason):
    token = build(jwt_setup)
    response = jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=bearer(token))
    assert_401(response)
    [denied] = events(logs, "access_denied")
    assert denied["status"] == 401
    assert denied["reason"] == reason
    assert not events(logs, "triage_decision")
    assert token not in all_logged(logs)
    assert token not in response.get_data(as_text=True)


def test_basic_auth_is_not_a_token(jwt_client, logs):
    assert_401(jwt_client.get("/v1/knowledge", headers={"Authorization": "Basic dXNlcjpwYXNz"}))
    assert events(logs, "access_denied")[0]["reason"] == "jwt_malformed"


def test_token_text_never_logged(jwt_client, jwt_setup, logs):
    good, narrow = jwt_setup.token(), jwt_setup.token(scope="knowledge")
    assert jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=bearer(good)).status_code == 200
    assert jwt_client.post("/v1/triage", json=TRIAGE_REQUEST, headers=bearer(narrow)).status_code == 403
    logged = all_logged(logs)
    assert events(logs, "triage_decision")
    for token in (good, narrow):
        assert token not in logged
        assert token.rsplit(".", 1)[1] not in logged  # not even the signature


def test_jwt_trust_file_needs_an_audience(jwt_setup):
    with pytest.raises(ValueError, match="API_JWT_AUDIENCE"):
        make_app(API_JWT_TRUST_FILE=jwt_setup.trust_file)


def test_public_base_url_is_the_default_audience(jwt_setup):
    client = make_app(API_JWT_TRUST_FILE=jwt_setup.trust_file, PUBLIC_BASE_URL=AUD + "/").test_client()
    assert client.get("/v1/knowledge", headers=bearer(jwt_setup.token())).status_code == 200


# --- 4. every route is classified ------------------------------------------------------------------
def test_every_route_has_a_declared_scope():
    app = make_app()
    routes = {route_template(rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes - set(ROUTE_SCOPES) == set(), "classify new routes in service.auth.guard.ROUTE_SCOPES"
    assert set(ROUTE_SCOPES) - routes == set(), "ROUTE_SCOPES names a route that does not exist"
    assert {ROUTE_SCOPES[r] for r in routes if r.startswith("/v1/")} <= {"triage", "knowledge"}


def test_guard_reads_route_scopes_by_template(tmp_path, monkeypatch):
    """Routes with converters (/v1/rules/<string(maxlength=64):rule_id>) are found under their template."""
    keys = write_keys(tmp_path, [key_entry("t", TRIAGE_KEY, ["triage"])])
    client = make_app(API_KEYS_FILE=keys).test_client()
    headers = {"X-API-Key": TRIAGE_KEY}
    assert_problem(client.get(f"/v1/rules/{RULE}", headers=headers), 403)
    monkeypatch.setitem(ROUTE_SCOPES, "/v1/rules/<rule_id>", "triage")
    assert client.get(f"/v1/rules/{RULE}", headers=headers).status_code == 200


def test_route_template_drops_converters():
    assert route_template("/v1/rules/<string(maxlength=64):rule_id>") == "/v1/rules/<rule_id>"
    assert route_template("/v1/sources/<source_id>") == "/v1/sources/<source_id>"
    assert route_template("/a/<int:x>/b/<path:y>") == "/a/<x>/b/<y>"


# --- 5. security headers on every response ---------------------------------------------------------
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def assert_hardened(response: Any) -> None:
    for name, value in SECURITY.items():
        assert response.headers.getlist(name) == [value], (response.status_code, name)
    for name in ("Content-Security-Policy", "X-Knowledge-Version", "X-Request-ID"):
        assert len(response.headers.getlist(name)) == 1, (response.status_code, name)  # each once, never twice
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.fixture(scope="module")
def open_client() -> flask.testing.FlaskClient:
    return make_app(API_OPEN=True).test_client()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/triage", TRIAGE_REQUEST, 200),
        ("GET", "/livez", None, 200),
        ("GET", "/v1/knowledge", None, 200),
        ("GET", "/v1/rules/NO-SUCH-RULE", None, 404),
        ("GET", "/no/such/path", None, 404),
        ("GET", "/v1/triage", None, 405),
        ("POST", "/v1/triage", {"findings": {"bladder": "bogus"}}, 422),
    ],
)
def test_security_headers(open_client, method, path, body, status):
    response = open_client.open(path, method=method, json=body)
    assert response.status_code == status
    assert_hardened(response)


def test_a_page_with_its_own_policy_keeps_it_and_gets_the_other_headers(open_client):
    """/docs sets a Content-Security-Policy that lets its own scripts run: the standard one does not replace it."""
    response = open_client.get("/docs")
    assert response.status_code == 200
    assert response.headers.getlist("Content-Security-Policy") == [DOCS_POLICY]
    for name, value in SECURITY.items():
        assert response.headers.getlist(name) == [value], name


def test_docs_with_a_trailing_slash_leads_to_the_docs_under_the_same_access(open_client, closed):
    response = open_client.get("/docs/")
    assert response.status_code in (301, 308)
    assert response.headers["Location"] == "/docs"
    assert_hardened(response)
    followed = open_client.get("/docs/", follow_redirects=True)
    assert followed.status_code == 200 and followed.request.path == "/docs"
    assert followed.headers.getlist("Content-Security-Policy") == [DOCS_POLICY]
    assert_401(closed.get("/docs/"))  # the docs scope, as for /docs itself
    assert_401(closed.get("/docs"))


def test_security_headers_on_401_and_403(tmp_path):
    keys = write_keys(tmp_path, [key_entry("t", TRIAGE_KEY, ["triage"])])
    client = make_app(API_KEYS_FILE=keys).test_client()
    for response, status in (
        (client.get("/v1/knowledge"), 401),
        (client.get("/v1/knowledge", headers={"X-API-Key": TRIAGE_KEY}), 403),
    ):
        assert response.status_code == status
        assert_hardened(response)


def test_security_headers_on_500(monkeypatch, logs):
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    app = create_app({"API_OPEN": True})  # not TESTING: the error is answered, as under gunicorn
    assert not app.testing
    monkeypatch.setattr("service.routes.triage.evaluate", boom)
    response = app.test_client().post("/v1/triage", json=TRIAGE_REQUEST)
    assert_problem(response, 500)
    assert_hardened(response)
    assert events(logs, "unhandled_error")


# --- 6. CORS ---------------------------------------------------------------------------------------
API_HEADERS = "X-API-Key, Content-Type"


def allowed_headers(response: Any) -> set[str]:
    value = response.headers.get("Access-Control-Allow-Headers", "")
    return {h.strip().lower() for h in value.split(",") if h.strip()}


def test_cors_preflight_from_an_allowed_origin():
    client = make_app(API_OPEN=True, CORS_ORIGINS=ORIGIN).test_client()
    response = preflight(client, ORIGIN, "/v1/triage", API_HEADERS)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {"x-api-key", "content-type"} <= allowed_headers(response)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    actual = client.post("/v1/triage", json=TRIAGE_REQUEST, headers={"Origin": ORIGIN})
    assert actual.status_code == 200
    assert actual.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "*" not in actual.headers["Access-Control-Allow-Origin"]


def test_cors_lets_a_browser_ask_for_compact_citations_and_read_that_it_got_them():
    client = make_app(API_OPEN=True, CORS_ORIGINS=ORIGIN).test_client()
    response = preflight(client, ORIGIN, "/v1/triage", "Content-Type, Prefer")
    assert response.status_code == 200
    assert {"prefer", "content-type"} <= allowed_headers(response)
    actual = client.post("/v1/triage", json=TRIAGE_REQUEST, headers={"Origin": ORIGIN, "Prefer": "citations=compact"})
    assert actual.headers["Preference-Applied"] == "citations=compact"
    assert "Preference-Applied" in actual.headers["Access-Control-Expose-Headers"]
    assert "prefer" in {v.strip().lower() for vary in actual.headers.get_all("Vary") for v in vary.split(",")}


def test_cors_preflight_needs_no_credentials(tmp_path):
    keys = write_keys(tmp_path, [key_entry("t", TRIAGE_KEY, ["triage"])])
    client = make_app(API_KEYS_FILE=keys, CORS_ORIGINS=ORIGIN).test_client()
    response = preflight(client, ORIGIN, "/v1/triage", API_HEADERS)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert_401(client.post("/v1/triage", json=TRIAGE_REQUEST, headers={"Origin": ORIGIN}))


@pytest.mark.parametrize(
    "origin", ["https://evil.example.org", "http://app.example.org", "https://app.example.org.evil"]
)
def test_cors_other_origins_get_no_allow_origin(origin):
    client = make_app(API_OPEN=True, CORS_ORIGINS=ORIGIN).test_client()
    response = preflight(client, origin, "/v1/triage", API_HEADERS)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert (
        "Access-Control-Allow-Origin"
        not in client.post("/v1/triage", json=TRIAGE_REQUEST, headers={"Origin": origin}).headers
    )


def test_cors_not_on_probes_or_metrics():
    client = make_app(API_OPEN=True, CORS_ORIGINS=ORIGIN).test_client()
    for path in ("/livez", "/metrics"):
        assert "Access-Control-Allow-Origin" not in client.get(path, headers={"Origin": ORIGIN}).headers


def test_no_cors_by_default(open_client):
    for response in (
        preflight(open_client, ORIGIN, "/v1/triage", API_HEADERS),
        open_client.post("/v1/triage", json=TRIAGE_REQUEST, headers={"Origin": ORIGIN}),
    ):
        assert not [h for h in response.headers if h[0].lower().startswith("access-control-")]


# --- 7. audit --------------------------------------------------------------------------------------
AUDIT_FIELDS = {
    # audit_decision's own fields
    "event",
    "channel",
    "triage_level",
    "provisional",
    "rules",
    "knowledge_version",
    "knowledge_sha256",
    "findings_fingerprint",
    # added by the logging setup: request context, log level, time
    "request_id",
    "caller",
    "level",
    "timestamp",
}
# A distinctive request: values that appear nowhere in the knowledge base's ids.
CANARY_REQUEST: dict[str, Any] = {
    "patient": {"age": 93, "sex": "female"},
    "findings": {
        "slr": {"result": "weak", "side": "right"},
        "sensation": {"status": "reduced", "areas": ["lower_leg", "foot"]},
        "pain": {"locations": ["front_of_hip", "anterior_thigh", "low_back"], "severity": 7, "unrelenting": "absent"},
        "history": {"onset": "sudden", "progression": "progressive", "trauma": "absent"},
    },
}


def reordered(value: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return value


def decisions(logs: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return events(logs, "triage_decision")


def test_one_audit_event_per_decision(open_client, logs, kb):
    responses = [
        open_client.post("/v1/triage", json=CANARY_REQUEST, headers={"X-Request-ID": request_id(f"audit-{i}")})
        for i in range(3)
    ]
    assert [r.status_code for r in responses] == [200, 200, 200]
    open_client.post("/v1/triage", json={"findings": {"bladder": "bogus"}})  # 422: no decision
    open_client.get("/v1/knowledge")
    found = decisions(logs)
    assert [e["request_id"] for e in found] == [request_id(f"audit-{i}") for i in range(3)]
    answer = responses[0].get_json()
    for event in found:
        assert set(event) <= AUDIT_FIELDS, set(event) - AUDIT_FIELDS
        assert "findings" not in event
        assert "patient" not in event
        assert event["channel"] == "api"
        assert event["triage_level"] == answer["triage"]["level"]
        assert event["provisional"] is answer["triage"]["provisional"]
        assert event["rules"] == [t["rule"] for t in answer["trace"]]
        assert set(event["rules"]) <= set(kb.rules_by_id)
        assert event["knowledge_version"] == kb.version == answer["knowledge"]["version"]
        assert event["knowledge_sha256"] == kb.sha256
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", event["findings_fingerprint"])
        assert event["findings_fingerprint"] == findings_fingerprint(CANARY_REQUEST)
        assert event["caller"] == "open"
    # No finding value in the events beyond the fingerprint.
    hashes_and_times = {"findings_fingerprint", "knowledge_sha256", "timestamp", "request_id"}  # hex may hold "93"
    rendered = json.dumps([{k: v for k, v in e.items() if k not in hashes_and_times} for e in found])
    for value in ("anterior_thigh", "lower_leg", "front_of_hip", "sudden", "93", "right", "female"):
        assert value not in rendered
    assert "front_of_hip" not in all_logged(logs)


def test_fingerprint_ignores_key_order_but_not_values(open_client, logs):
    variants = [
        CANARY_REQUEST,
        reordered(CANARY_REQUEST),
        {**CANARY_REQUEST, "findings": {**CANARY_REQUEST["findings"], "bladder": "normal"}},
        {**CANARY_REQUEST, "patient": {"age": 94, "sex": "female"}},
    ]
    assert list(variants[1]) != list(variants[0])
    for body in variants:
        assert open_client.post("/v1/triage", json=body).status_code == 200
    same, reorder, more, older = (e["findings_fingerprint"] for e in decisions(logs))
    assert same == reorder
    assert len({same, more, older}) == 3


def test_fingerprint_is_canonical():
    """Key order and whitespace do not matter (the HTTP layer's schema already fixes the order)."""
    assert findings_fingerprint(reordered(CANARY_REQUEST)) == findings_fingerprint(CANARY_REQUEST)
    assert findings_fingerprint(reordered(CANARY_REQUEST), "k") == findings_fingerprint(CANARY_REQUEST, "k")
    assert findings_fingerprint({"findings": {"pain": {"severity": 7}}}) != findings_fingerprint(
        {"findings": {"pain": {"severity": 8}}}
    )


def test_keyed_fingerprint(open_client, logs):
    keyed = make_app(API_OPEN=True, AUDIT_HASH_KEY="audit-key-for-tests").test_client()
    other_key = make_app(API_OPEN=True, AUDIT_HASH_KEY="another-audit-key").test_client()
    for client in (open_client, keyed, keyed, other_key):
        assert client.post("/v1/triage", json=CANARY_REQUEST).status_code == 200
    plain, hmac1, hmac2, hmac_other = (e["findings_fingerprint"] for e in decisions(logs))
    assert plain.startswith("sha256:")
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", hmac1)
    assert hmac1 == hmac2
    assert hmac1.removeprefix("hmac-sha256:") != plain.removeprefix("sha256:")
    assert hmac_other != hmac1
    assert hmac1 == findings_fingerprint(CANARY_REQUEST, "audit-key-for-tests")
    assert "audit-key-for-tests" not in all_logged(logs)


def test_no_audit_event_without_access(closed, logs):
    assert_401(closed.post("/v1/triage", json=CANARY_REQUEST))
    assert not decisions(logs)


# --- 8. metrics (this process's registry) ----------------------------------------------------------
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: flask.testing.FlaskClient) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def label_values(samples: Samples, label: str) -> set[str]:
    return {value for _, labels in samples for name, value in labels if name == label}


@pytest.fixture
def metered() -> Iterator[flask.testing.FlaskClient]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pytest.skip("PROMETHEUS_MULTIPROC_DIR is set: /metrics reads the multiprocess files (tests/test_runtime.py)")
    yield make_app(API_OPEN=True, METRICS_OPEN=True).test_client()


def test_requests_and_decisions_are_counted(metered, kb):
    _, before = scrape(metered)
    calls = 4
    levels = [metered.post("/v1/triage", json=TRIAGE_REQUEST).get_json()["triage"]["level"] for _ in range(calls)]
    assert len(set(levels)) == 1
    _, after = scrape(metered)
    triage_200 = {"method": "POST", "route": "/v1/triage", "status": "200"}
    assert delta(before, after, "triage_http_requests_total", **triage_200) == calls
    decided = {"channel": "api", "level": levels[0], "knowledge": kb.version}
    assert delta(before, after, "triage_decisions_total", **decided) == calls
    latency = {"method": "POST", "route": "/v1/triage"}
    assert delta(before, after, "triage_http_request_duration_seconds_count", **latency) == calls


def test_errors_are_counted_by_status(metered):
    _, before = scrape(metered)
    metered.post("/v1/triage", json={"findings": {"bladder": "bogus"}})
    metered.get("/v1/triage")
    _, after = scrape(metered)
    assert delta(before, after, "triage_http_requests_total", method="POST", route="/v1/triage", status="422") == 1
    assert delta(before, after, "triage_http_requests_total", method="GET", route="/v1/triage", status="405") == 0
    assert delta(before, after, "triage_http_requests_total", method="GET", route="(unmatched)", status="405") == 1
    assert sum(v for (n, _), v in after.items() if n == "triage_decisions_total") == sum(
        v for (n, _), v in before.items() if n == "triage_decisions_total"
    )


def test_labels_never_carry_request_values(metered):
    canary = "CANARY-7f3e9d2a"
    _, before = scrape(metered)
    assert metered.get(f"/v1/rules/{canary}").status_code == 404
    assert metered.get(f"/no/such/{canary}").status_code == 404
    assert metered.get(f"/v1/sources/{canary}", headers={"X-Request-ID": canary}).status_code == 404
    text, after = scrape(metered)
    assert canary not in text
    assert 'route="/v1/rules/<rule_id>"' in text
    assert delta(before, after, "triage_http_requests_total", method="GET", route="/v1/rules/<rule_id>", status="404")
    assert delta(
        before, after, "triage_http_requests_total", method="GET", route="/v1/sources/<source_id>", status="404"
    )
    assert delta(before, after, "triage_http_requests_total", method="GET", route="(unmatched)", status="404") == 1
    for route in label_values(after, "route"):
        assert route == "(unmatched)" or route in ROUTE_SCOPES, route


def test_probes_and_scrapes_are_not_counted(metered):
    _, before = scrape(metered)
    for path in ("/livez", "/readyz", "/metrics", "/livez"):
        assert metered.get(path).status_code == 200
    _, after = scrape(metered)
    assert not {"/livez", "/readyz", "/metrics"} & label_values(after, "route")
    changed = {k for k in after if k[0].startswith("triage_http") and after[k] != before.get(k, 0.0)}
    assert changed == set()


def test_metrics_content_type(metered):
    response = metered.get("/metrics")
    assert response.mimetype == "text/plain"
    assert "# TYPE triage_http_requests_total counter" in response.get_data(as_text=True)
