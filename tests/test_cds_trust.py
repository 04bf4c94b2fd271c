"""CDS Hooks client JWT verification (service/auth/tokens.py): spec example, fresh tokens, every refusal."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from service.auth.replay import ReplayStoreUnavailable
from service.auth.tokens import (
    MAX_JWKS_BYTES,
    MIN_REFETCH_INTERVAL,
    REASONS,
    Issuer,
    TokenRejected,
    TokenVerifier,
    download_jwks,
    load_trust_file,
)
from tests.jwt_helpers import (
    SPEC_AUD,
    SPEC_CLAIMS,
    SPEC_ISS,
    SPEC_JKU,
    SPEC_JWKS,
    SPEC_TOKEN,
    JwksServer,
    SigningKey,
    make_es384_key,
    make_rs384_key,
    mint,
)

ISS = "https://ehr.test/fhir"
OTHER_ISS = "https://other-ehr.test/fhir"
AUD = "https://cds.test/cds-services/legraise-triage"

ES = make_es384_key("es-1")
RS = make_rs384_key("rs-1")


class Clock:
    """A settable clock for the verifier (replay expiry, JWKS ttl, refetch rate limit)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer() as srv:
        srv.publish("/jwks", {"keys": [ES.public_jwk(), RS.public_jwk()]})
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(server: JwksServer, clock: Clock) -> TokenVerifier:
    return TokenVerifier(
        [Issuer(ISS, jwks_url=server.url("/jwks")), Issuer(OTHER_ISS, jwks_url=server.url("/jwks"))], clock=clock
    )


def token(key: SigningKey = ES, clock: Clock | None = None, **kw: Any) -> str:
    kw.setdefault("iss", ISS)
    kw.setdefault("aud", AUD)
    return mint(key, now=clock.now if clock else None, **kw)


def rejected(verifier: TokenVerifier, authorization: str | None, audience: str = AUD) -> str:
    """The reason code, after checking that nothing the exception shows carries token text."""
    with pytest.raises(TokenRejected) as info:
        verifier.verify(authorization, audience)
    exc = info.value
    assert exc.reason in REASONS
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), *map(str, exc.args)]
    # The header itself and each dot/space separated piece of it (header, payload, signature segments).
    pieces = [authorization or "", *(authorization or "").replace(" ", ".").split(".")]
    secrets = [piece for piece in pieces if len(piece.strip()) > 6]
    for text in shown:
        for secret in secrets:
            assert secret not in text, "token text leaked into the exception"
    return exc.reason


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def segments(tok: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, sig = tok.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(head + "==")),
        json.loads(base64.urlsafe_b64decode(body + "==")),
        sig,
    )


# --- the spec example -----------------------------------------------------------------------------


@pytest.fixture
def spec_verifier(server: JwksServer) -> TokenVerifier:
    """The spec token names jku https://fhir-ehr.example.com/jwk_uri: route that URL to the loopback server."""
    server.publish("/spec-jwks", SPEC_JWKS)

    def fetch(url: str) -> dict[str, Any]:
        assert url == SPEC_JKU
        return download_jwks(server.url("/spec-jwks"), timeout=2.0)

    mid = (SPEC_CLAIMS["iat"] + SPEC_CLAIMS["exp"]) / 2
    return TokenVerifier([Issuer(SPEC_ISS, jku=(SPEC_JKU,))], clock=lambda: mid, max_lifetime=10**9, fetch_jwks=fetch)


def test_spec_token_verifies_with_spec_key(spec_verifier: TokenVerifier, server: JwksServer) -> None:
    header, _, _ = segments(SPEC_TOKEN)
    assert header == {"alg": "ES384", "typ": "JWT", "kid": "example-kid", "jku": SPEC_JKU}
    assert spec_verifier.verify(f"Bearer {SPEC_TOKEN}", SPEC_AUD) == SPEC_CLAIMS
    assert server.hits("/spec-jwks") == 1


def test_spec_token_wrong_audience(spec_verifier: TokenVerifier) -> None:
    assert rejected(spec_verifier, f"Bearer {SPEC_TOKEN}", "https://cds.example.org/cds-services/other") == "audience"


def test_spec_token_outside_its_lifetime_is_expired(server: JwksServer) -> None:
    verifier = TokenVerifier(
        [Issuer(SPEC_ISS, jku=(SPEC_JKU,))],
        max_lifetime=10**9,
        fetch_jwks=lambda url: download_jwks(server.url("/spec-jwks"), timeout=2.0),
    )
    server.publish("/spec-jwks", SPEC_JWKS)
    assert rejected(verifier, f"Bearer {SPEC_TOKEN}", SPEC_AUD) == "expired"  # real clock: 2015 is past


def test_spec_token_default_lifetime_limit(server: JwksServer) -> None:
    server.publish("/spec-jwks", SPEC_JWKS)
    verifier = TokenVerifier(
        [Issuer(SPEC_ISS, jku=(SPEC_JKU,))],
        clock=lambda: SPEC_CLAIMS["iat"] + 10,
        fetch_jwks=lambda url: download_jwks(server.url("/spec-jwks"), timeout=2.0),
    )
    assert rejected(verifier, f"Bearer {SPEC_TOKEN}", SPEC_AUD) == "lifetime"


def test_spec_token_with_alg_none_is_refused(spec_verifier: TokenVerifier) -> None:
    header, claims, sig = segments(SPEC_TOKEN)
    unsigned = f"{b64({**header, 'alg': 'none'})}.{b64(claims)}."
    assert rejected(spec_verifier, f"Bearer {unsigned}", SPEC_AUD) == "alg"
    resigned = f"{b64({**header, 'alg': 'none'})}.{b64(claims)}.{sig}"
    assert rejected(spec_verifier, f"Bearer {resigned}", SPEC_AUD) == "alg"


@pytest.mark.parametrize("alg", ["HS384", "HS256", "ES256", "RS256", "PS384", "EdDSA", "es384"])
def test_spec_issuer_other_algorithms_are_refused(spec_verifier: TokenVerifier, alg: str) -> None:
    header, claims, _ = segments(SPEC_TOKEN)
    if alg.startswith("HS"):
        secret = "a-shared-secret-long-enough-for-hs384-" + "x" * 32
        forged = jwt.encode(claims, secret, algorithm=alg, headers={**header, "alg": alg})
    else:
        forged = f"{b64({**header, 'alg': alg})}.{b64(claims)}.{segments(SPEC_TOKEN)[2]}"
    assert rejected(spec_verifier, f"Bearer {forged}", SPEC_AUD) == "alg"


def test_spec_token_with_changed_claims_fails_signature(spec_verifier: TokenVerifier) -> None:
    header_seg, _, sig = SPEC_TOKEN.split(".")
    forged = f"{header_seg}.{b64({**SPEC_CLAIMS, 'tenant': 'someone-else'})}.{sig}"
    assert rejected(spec_verifier, f"Bearer {forged}", SPEC_AUD) == "signature"


# --- fresh tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ES, RS], ids=["ES384", "RS384"])
def test_fresh_token_verifies(verifier: TokenVerifier, clock: Clock, key: SigningKey) -> None:
    tok = token(key, clock, claims={"tenant": "t-1"})
    claims = verifier.verify(f"Bearer {tok}", AUD)
    assert claims["iss"] == ISS and claims["aud"] == AUD and claims["tenant"] == "t-1"
    assert "sub" not in claims  # CDS Hooks does not require sub


def test_audience_as_list(verifier: TokenVerifier, clock: Clock) -> None:
    assert verifier.verify(f"Bearer {token(clock=clock, aud=[AUD])}", AUD)["aud"] == [AUD]
    assert rejected(verifier, f"Bearer {token(clock=clock, aud=['https://cds.test/elsewhere'])}") == "audience"


def test_scheme_is_case_insensitive(verifier: TokenVerifier, clock: Clock) -> None:
    verifier.verify(f"bearer {token(clock=clock)}", AUD)
    verifier.verify(f"BEARER  {token(clock=clock)} ", AUD)


def test_typ_is_optional_and_case_insensitive(verifier: TokenVerifier, clock: Clock) -> None:
    verifier.verify(f"Bearer {token(clock=clock, headers={'typ': None})}", AUD)
    verifier.verify(f"Bearer {token(clock=clock, headers={'typ': 'jwt'})}", AUD)
    assert rejected(verifier, f"Bearer {token(clock=clock, headers={'typ': 'at+jwt'})}") == "malformed"


def test_rsa_jwk_without_alg_is_used_for_rs384(server: JwksServer, verifier: TokenVerifier, clock: Clock) -> None:
    jwk = {k: v for k, v in RS.public_jwk().items() if k != "alg"}
    server.publish("/jwks", {"keys": [jwk]})
    verifier.verify(f"Bearer {token(RS, clock)}", AUD)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("Basic xyz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer ", "malformed"),
        ("Bearer garbage", "malformed"),
        ("Bearer a.b.c", "malformed"),
        ("Bearer eyJhbGciOiJFUzM4NCJ9.e30", "malformed"),
        ("Bearer x y", "malformed"),
        ("Bearer " + "a" * 20_000, "malformed"),
    ],
)
def test_bad_authorization_header(verifier: TokenVerifier, authorization: str | None, reason: str) -> None:
    assert rejected(verifier, authorization) == reason


def test_token_with_other_scheme(verifier: TokenVerifier, clock: Clock) -> None:
    assert rejected(verifier, f"Token {token(clock=clock)}") == "malformed"


def test_unknown_issuer(verifier: TokenVerifier, clock: Clock) -> None:
    assert rejected(verifier, f"Bearer {token(clock=clock, iss='https://ehr.test/fhir/')}") == "issuer"


def test_missing_kid(verifier: TokenVerifier, clock: Clock) -> None:
    assert rejected(verifier, f"Bearer {token(clock=clock, headers={'kid': None})}") == "kid"
    assert rejected(verifier, f"Bearer {token(clock=clock, headers={'kid': ''})}") == "kid"


def test_jku_must_be_allow_listed(server: JwksServer, clock: Clock) -> None:
    server.publish("/jku-keys", {"keys": [ES.public_jwk()]})
    server.publish("/jwks", {"keys": []})  # the issuer's default set: the key is only behind the jku
    verifier = TokenVerifier([Issuer(ISS, jwks_url=server.url("/jwks"), jku=(server.url("/jku-keys"),))], clock=clock)

    verifier.verify(f"Bearer {token(clock=clock, headers={'jku': server.url('/jku-keys')})}", AUD)
    assert server.hits("/jku-keys") == 1 and server.hits("/jwks") == 0

    elsewhere = server.url("/jku-keys?x=1")  # exact match only
    assert rejected(verifier, f"Bearer {token(clock=clock, headers={'jku': elsewhere})}") == "jku"
    assert rejected(verifier, f"Bearer {token(clock=clock, headers={'jku': 'https://evil.test/jwks'})}") == "jku"
    assert server.hits("/jku-keys") == 1


def test_issuer_with_only_jku_needs_a_jku(server: JwksServer, clock: Clock) -> None:
    verifier = TokenVerifier([Issuer(ISS, jku=(server.url("/jwks"),))], clock=clock)
    assert rejected(verifier, f"Bearer {token(clock=clock)}") == "jku"
    verifier.verify(f"Bearer {token(clock=clock, headers={'jku': server.url('/jwks')})}", AUD)


def test_unknown_kid_refetches_once_and_rate_limited(server: JwksServer, verifier: TokenVerifier, clock: Clock) -> None:
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    assert server.hits("/jwks") == 1

    rotated = make_es384_key("es-2")
    # Just fetched: an unknown kid does not trigger another fetch yet.
    assert rejected(verifier, f"Bearer {token(rotated, clock)}") == "kid"
    assert server.hits("/jwks") == 1

    clock.now += MIN_REFETCH_INTERVAL + 1
    assert rejected(verifier, f"Bearer {token(rotated, clock)}") == "kid"
    assert server.hits("/jwks") == 2  # refetched once
    for _ in range(5):
        assert rejected(verifier, f"Bearer {token(rotated, clock)}") == "kid"
    assert server.hits("/jwks") == 2  # and not again within the interval

    server.publish("/jwks", {"keys": [ES.public_jwk(), rotated.public_jwk()]})
    clock.now += MIN_REFETCH_INTERVAL + 1
    verifier.verify(f"Bearer {token(rotated, clock)}", AUD)  # the rotated-in key is found on refetch
    assert server.hits("/jwks") == 3


def test_tampered_signature(verifier: TokenVerifier, clock: Clock) -> None:
    head, body, sig = token(clock=clock).split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 0x01
    tampered = f"{head}.{body}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    assert rejected(verifier, f"Bearer {tampered}") == "signature"


@pytest.mark.parametrize("make", [make_es384_key, make_rs384_key], ids=["ES384", "RS384"])
def test_wrong_key_same_kid(verifier: TokenVerifier, clock: Clock, make: Any) -> None:
    impostor = make(ES.kid if make is make_es384_key else RS.kid)
    assert rejected(verifier, f"Bearer {token(impostor, clock)}") == "signature"


def test_expiry_and_leeway(verifier: TokenVerifier, clock: Clock) -> None:
    tok = token(clock=clock, lifetime=60)
    clock.now += 60 + 29  # within the 30 s leeway
    verifier.verify(f"Bearer {tok}", AUD)
    late = token(clock=clock, lifetime=60)
    clock.now += 60 + 30
    assert rejected(verifier, f"Bearer {late}") == "expired"


def test_iat_in_the_future(verifier: TokenVerifier, clock: Clock) -> None:
    verifier.verify(f"Bearer {mint(ES, iss=ISS, aud=AUD, now=clock.now + 25)}", AUD)
    assert rejected(verifier, f"Bearer {mint(ES, iss=ISS, aud=AUD, now=clock.now + 120)}") == "iat"
    nbf_later = token(clock=clock, claims={"nbf": clock.now + 120})
    assert rejected(verifier, f"Bearer {nbf_later}") == "iat"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": None},
        {"iat": None},
        {"jti": None},
        {"aud": None},
        {"iss": None},
        {"jti": ""},
        {"jti": 42},
        {"exp": "9999999999"},
        {"iat": True},
        {"nbf": "soon"},
        {"exp": float("nan")},  # issue 20: NaN never compared as expired
        {"iat": float("nan")},  # issue 20: NaN slipped past the lifetime cap
        {"exp": float("inf")},
    ],
    ids=lambda c: ",".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_missing_or_mistyped_claims(verifier: TokenVerifier, clock: Clock, claims: dict[str, Any]) -> None:
    assert rejected(verifier, f"Bearer {token(clock=clock, claims=claims)}") == "claims"


def test_exp_before_iat(verifier: TokenVerifier, clock: Clock) -> None:
    assert rejected(verifier, f"Bearer {token(clock=clock, claims={'exp': clock.now - 1})}") == "claims"


def test_lifetime_limit(server: JwksServer, clock: Clock) -> None:
    verifier = TokenVerifier([Issuer(ISS, jwks_url=server.url("/jwks"))], clock=clock, max_lifetime=300)
    verifier.verify(f"Bearer {token(clock=clock, lifetime=300)}", AUD)
    assert rejected(verifier, f"Bearer {token(clock=clock, lifetime=301)}") == "lifetime"


def test_replay_refused_per_issuer(verifier: TokenVerifier, clock: Clock) -> None:
    first = token(clock=clock, jti="same-jti")
    verifier.verify(f"Bearer {first}", AUD)
    assert rejected(verifier, f"Bearer {first}") == "replay"
    assert rejected(verifier, f"Bearer {token(clock=clock, jti='same-jti')}") == "replay"  # new token, same jti
    verifier.verify(f"Bearer {token(clock=clock, jti='same-jti', iss=OTHER_ISS)}", AUD)  # other issuer


def test_refused_token_is_not_remembered(verifier: TokenVerifier, clock: Clock) -> None:
    assert rejected(verifier, f"Bearer {token(clock=clock, jti='j-1')}", "https://cds.test/other") == "audience"
    verifier.verify(f"Bearer {token(clock=clock, jti='j-1')}", AUD)


def test_replay_store_that_cannot_answer_refuses_the_token(server: JwksServer, clock: Clock) -> None:
    class Down:
        def first_use(self, iss: str, jti: str, forget_at: float, now: float) -> bool:
            raise ReplayStoreUnavailable("ConnectionError")

    verifier = TokenVerifier([Issuer(ISS, jwks_url=server.url("/jwks"))], clock=clock, replay_store=Down())
    with pytest.raises(ReplayStoreUnavailable):
        verifier.verify(f"Bearer {token(clock=clock)}", AUD)


def test_replayed_jti_accepted_again_after_expiry(verifier: TokenVerifier, clock: Clock) -> None:
    verifier.verify(f"Bearer {token(clock=clock, jti='again', lifetime=60)}", AUD)
    clock.now += 59
    assert rejected(verifier, f"Bearer {token(clock=clock, jti='again', lifetime=60)}") == "replay"
    clock.now += 31 + 1  # past exp + leeway of the first token
    verifier.verify(f"Bearer {token(clock=clock, jti='again', lifetime=60)}", AUD)


def test_concurrent_replay_accepts_exactly_one(verifier: TokenVerifier, clock: Clock, server: JwksServer) -> None:
    tok = token(clock=clock)
    results: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            verifier.verify(f"Bearer {tok}", AUD)
            outcome = "ok"
        except TokenRejected as exc:
            outcome = exc.reason
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["ok"] + ["replay"] * 15
    assert server.hits("/jwks") == 1  # one fetch served every thread


def test_jwks_cached_for_ttl(server: JwksServer, clock: Clock) -> None:
    verifier = TokenVerifier([Issuer(ISS, jwks_url=server.url("/jwks"))], clock=clock, jwks_ttl=300)
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    clock.now += 299
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    assert server.hits("/jwks") == 1
    clock.now += 1
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    assert server.hits("/jwks") == 2


def test_stale_set_kept_when_refetch_fails(server: JwksServer, verifier: TokenVerifier, clock: Clock) -> None:
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    server.publish_raw("/jwks", b"down", status=503)
    clock.now += 301
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    assert server.hits("/jwks") == 2


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks"


@pytest.mark.parametrize(
    "response",
    [
        {"status": 404, "body": b""},
        {"status": 500, "body": json.dumps({"keys": []}).encode()},
        {"status": 302, "body": b"", "headers": {"Location": "/good"}},
        {"status": 200, "body": b"not json"},
        {"status": 200, "body": b'["keys"]'},
        {"status": 200, "body": b'{"keys": {}}'},
        {"status": 200, "body": b'{"keys": [' + b" " * MAX_JWKS_BYTES + b"]}"},
        {"status": 200, "body": b'{"keys": [' + b" " * MAX_JWKS_BYTES + b"]}", "sized": False},
    ],
    ids=["404", "500", "redirect", "not-json", "not-object", "keys-not-list", "too-large", "too-large-unsized"],
)
def test_jwks_unavailable(server: JwksServer, verifier: TokenVerifier, clock: Clock, response: dict[str, Any]) -> None:
    server.publish("/good", {"keys": [ES.public_jwk()]})
    server.publish_raw(
        "/jwks", response["body"], response["status"], response.get("headers"), sized=response.get("sized", True)
    )
    assert rejected(verifier, f"Bearer {token(clock=clock)}") == "jwks_unavailable"
    assert server.hits("/good") == 0  # redirects are not followed


def test_jwks_unreachable_and_backoff(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    url = _closed_port_url()
    calls: list[str] = []

    def fetch(u: str) -> dict[str, Any]:
        calls.append(u)
        return download_jwks(u, timeout=2.0)

    verifier = TokenVerifier([Issuer(ISS, jwks_url=url)], clock=clock, fetch_jwks=fetch)
    tok = token(clock=clock)
    with caplog.at_level(logging.WARNING, logger="service.auth.tokens"):
        assert rejected(verifier, f"Bearer {tok}") == "jwks_unavailable"
        assert rejected(verifier, f"Bearer {tok}") == "jwks_unavailable"
    assert calls == [url]  # a dead endpoint is not hammered
    assert url in caplog.text and tok not in caplog.text
    clock.now += MIN_REFETCH_INTERVAL
    assert rejected(verifier, f"Bearer {tok}") == "jwks_unavailable"
    assert calls == [url, url]


def test_fetch_hook_errors_mean_unavailable(clock: Clock) -> None:
    def broken(url: str) -> dict[str, Any]:
        raise RuntimeError("boom")

    verifier = TokenVerifier([Issuer(ISS, jwks_url="https://keys.test/jwks")], clock=clock, fetch_jwks=broken)
    assert rejected(verifier, f"Bearer {token(clock=clock)}") == "jwks_unavailable"


@pytest.mark.parametrize(
    "change",
    [
        lambda jwk: {**jwk, "alg": "ES256"},  # JWK says another algorithm
        lambda jwk: {**jwk, "alg": "RS384"},
        lambda jwk: {**jwk, "use": "enc"},
        lambda jwk: {**jwk, "x": "AAAA"},  # not a point on the curve
        lambda jwk: {
            **{k: v for k, v in make_es384_key("x").public_jwk().items() if k != "alg"},
            "crv": "P-256",
            "kid": jwk["kid"],
        },
    ],
    ids=["alg-ES256", "alg-RS384", "use-enc", "bad-point", "wrong-curve"],
)
def test_unfit_ec_jwk(server: JwksServer, verifier: TokenVerifier, clock: Clock, change: Any) -> None:
    server.publish("/jwks", {"keys": [change(ES.public_jwk())]})
    assert rejected(verifier, f"Bearer {token(clock=clock)}") == "key"


def test_p256_key_for_es384_token_refused(server: JwksServer, verifier: TokenVerifier, clock: Clock) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    p256 = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    server.publish("/jwks", {"keys": [{**p256, "kid": ES.kid}]})
    assert rejected(verifier, f"Bearer {token(clock=clock)}") == "key"


def test_rsa_jwk_with_other_alg_refused(server: JwksServer, verifier: TokenVerifier, clock: Clock) -> None:
    server.publish("/jwks", {"keys": [{**RS.public_jwk(), "alg": "RS256"}]})
    assert rejected(verifier, f"Bearer {token(RS, clock)}") == "key"


def test_small_rsa_key_refused(server: JwksServer, verifier: TokenVerifier, clock: Clock) -> None:
    weak = make_rs384_key("weak", bits=1024)
    server.publish("/jwks", {"keys": [weak.public_jwk()]})
    assert rejected(verifier, f"Bearer {token(weak, clock)}") == "key"


# --- trust file -----------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_trust_file_with_relative_jwks_file(tmp_path: Path, clock: Clock) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    _write(keys / "ehr.json", json.dumps({"keys": [ES.public_jwk()]}))
    trust = _write(
        tmp_path / "trust.yaml",
        f"""
issuers:
  - iss: {ISS}
    jwks_file: keys/ehr.json
  - iss: {OTHER_ISS}
    jwks_url: https://other-ehr.test/.well-known/jwks.json
    jku: [https://other-ehr.test/jwks, "http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]/jwks"]
""",
    )
    issuers = load_trust_file(trust)
    assert issuers == [
        Issuer(ISS, jwks_file=str((keys / "ehr.json").resolve())),
        Issuer(
            OTHER_ISS,
            jwks_url="https://other-ehr.test/.well-known/jwks.json",
            jku=(
                "https://other-ehr.test/jwks",
                "http://127.0.0.1:8080/jwks",
                "http://localhost/jwks",
                "http://[::1]/jwks",
            ),
        ),
    ]
    verifier = TokenVerifier(issuers, clock=clock)
    verifier.verify(f"Bearer {token(clock=clock)}", AUD)
    assert rejected(verifier, f"Bearer {token(make_es384_key('nope'), clock)}") == "kid"


def test_trust_file_json(tmp_path: Path) -> None:
    trust = _write(tmp_path / "trust.json", json.dumps({"issuers": [{"iss": ISS, "jwks_url": "https://k.test/j"}]}))
    assert load_trust_file(str(trust)) == [Issuer(ISS, jwks_url="https://k.test/j")]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "issuers:\n  - iss: a\n    jwks_url: https://k.test/j\n    jwks_uri: https://k.test/j\n",
            "unknown key 'jwks_uri'",
        ),
        ("issuers:\n  - jwks_url: https://k.test/j\n", "missing iss"),
        ("issuers:\n  - iss: ''\n    jwks_url: https://k.test/j\n", "missing iss"),
        ("issuers:\n  - iss: 7\n    jwks_url: https://k.test/j\n", "missing iss"),
        ("issuers:\n  - iss: a\n", "needs a key source"),
        (
            "issuers:\n  - {iss: a, jwks_url: 'https://k.test/1'}\n  - {iss: a, jwks_url: 'https://k.test/2'}\n",
            "duplicate",
        ),
        ("issuers:\n  - iss: a\n    jwks_url: http://k.test/j\n", "jwks_url must be an https URL"),
        ("issuers:\n  - iss: a\n    jwks_url: ftp://k.test/j\n", "jwks_url must be an https URL"),
        ("issuers:\n  - iss: a\n    jwks_url: https://user:pw@k.test/j\n", "credentials"),
        ("issuers:\n  - iss: a\n    jwks_url: 'https:///j'\n", "not a valid URL"),
        ("issuers:\n  - iss: a\n    jku: [http://127.0.0.2.example/j]\n", "jku[0] must be an https URL"),
        ("issuers:\n  - iss: a\n    jku: https://k.test/j\n", "jku must be a list"),
        ("issuers:\n  - iss: a\n    jku: [42]\n", "jku[0] must be a non-empty string"),
        ("issuers:\n  - iss: a\n    jwks_url: https://k.test/j\n    jwks_file: k.json\n", "not both"),
        ("issuers:\n  - iss: a\n    jwks_file: missing.json\n", "jwks_file not found"),
        ("issuers:\n  - iss: a\n    jwks_file: ['k.json']\n", "jwks_file must be a non-empty string"),
        ("issuers: []\n", "non-empty list"),
        ("{}\n", "non-empty list"),
        ("issuers:\n  - {iss: a, jwks_url: 'https://k.test/j'}\nextra: 1\n", "unknown top-level key 'extra'"),
        ("issuers:\n  - just-a-string\n", "must be a mapping"),
        ("- iss: a\n", "must be a mapping"),
        ("issuers: [\n", "not valid YAML"),
    ],
)
def test_trust_file_problems(tmp_path: Path, text: str, problem: str) -> None:
    trust = _write(tmp_path / "trust.yaml", text)
    with pytest.raises(ValueError, match="trust file") as info:
        load_trust_file(trust)
    assert problem in str(info.value)


def test_trust_file_lists_every_problem(tmp_path: Path) -> None:
    trust = _write(
        tmp_path / "trust.yaml",
        "issuers:\n  - {jwks_url: 'http://k.test/j', color: red}\n  - {iss: b}\n",
    )
    with pytest.raises(ValueError) as info:
        load_trust_file(trust)
    message = str(info.value)
    for problem in ("issuers[0]: unknown key 'color'", "issuers[0]: missing iss", "issuers[0].jwks_url", "issuers[1]"):
        assert problem in message


def test_trust_file_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        load_trust_file(tmp_path / "absent.yaml")


def test_verifier_checks_issuers_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        TokenVerifier([Issuer(ISS, jwks_url="https://k.test/1"), Issuer(ISS, jwks_url="https://k.test/2")])
    with pytest.raises(ValueError, match="https"):
        TokenVerifier([Issuer(ISS, jwks_url="http://k.test/1")])
    with pytest.raises(ValueError, match="cannot be read"):
        TokenVerifier([Issuer(ISS, jwks_file=str(tmp_path / "absent.json"))])
    bad = _write(tmp_path / "bad.json", '{"kty": "EC"}')
    with pytest.raises(ValueError, match="not a JWK Set"):
        TokenVerifier([Issuer(ISS, jwks_file=str(bad))])
    no_kid = _write(tmp_path / "nokid.json", json.dumps({"keys": [{"kty": "EC"}]}))
    with pytest.raises(ValueError, match="no key with a kid"):
        TokenVerifier([Issuer(ISS, jwks_file=str(no_kid))])


# --- nothing leaks --------------------------------------------------------------------------------


def test_rejection_shows_only_the_reason(verifier: TokenVerifier, clock: Clock) -> None:
    tok = token(clock=clock, claims={"tenant": "secret-tenant-value"}, aud="https://cds.test/other")
    with pytest.raises(TokenRejected) as info:
        verifier.verify(f"Bearer {tok}", AUD)
    assert str(info.value) == "audience" and info.value.args == ("audience",)
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert "secret-tenant-value" not in text and tok not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
