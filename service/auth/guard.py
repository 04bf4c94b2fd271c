"""Flask side of access control and response hardening: credentials per route, security headers, CORS."""

from __future__ import annotations

import re
from typing import Any

import flask
import structlog
from apispec import BasePlugin
from flask_cors import CORS
from flask_smorest import abort

from service.auth.policy import AccessPolicy, Unauthenticated, load_api_keys
from service.auth.tokens import TokenVerifier, load_trust_file
from service.cds.setup import as_list
from service.logs.requests import route_template
from service.logs.setup import log

WWW_AUTHENTICATE = 'Bearer realm="legraise-triage"'
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",  # answers are about a patient: never cached by a browser or proxy
}
# Every route and what it needs. A route missing here fails a test, so none is left open by accident.
# None: open; "cds": CDS Hooks JWT (service/routes/cds.py); "docs"/"metrics": open only if configured.
ROUTE_SCOPES: dict[str, str | None] = {
    "/livez": None,
    "/readyz": None,
    "/metrics": "metrics",
    "/openapi.json": "docs",
    "/openapi.yaml": "docs",
    "/docs": "docs",
    "/docs/": "docs",
    "/docs/init.js": "docs",
    "/docs/assets/<name>": "docs",
    "/v1/triage": "triage",
    "/v1/triage/batch": "triage",
    "/v1/knowledge": "knowledge",
    "/v1/rules/<rule_id>": "knowledge",
    "/v1/sources": "knowledge",
    "/v1/sources/<source_id>": "knowledge",
    "/v1/citations/<citation_id>": "knowledge",
    "/cds-services": "cds",
    "/cds-services/<service_id>": "cds",
    "/cds-services/<service_id>/feedback": "cds",
    "/knowledge": "knowledge",
    "/knowledge/rules/<rule_id>": "knowledge",
    "/knowledge/pages.css": "knowledge",
}
# The setting that opens a route without a credential (else it needs its scope).
OPENED_BY = {
    **{route: "DOCS_OPEN" for route, scope in ROUTE_SCOPES.items() if scope == "docs"},
    "/metrics": "METRICS_OPEN",
    # The clinician pages: no patient data, and a clinician following a CDS card link has no API credential.
    **{route: "PAGES_OPEN" for route in ROUTE_SCOPES if route.startswith("/knowledge")},
}


# How /v1 is authenticated, as the OpenAPI document declares it (AccessDocs).
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (TRIAGE_API_KEYS_FILE).",
    },
    "bearerJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A bearer JWT from a trusted issuer (TRIAGE_API_JWT_TRUST_FILE), ES384 or RS384.",
    },
}


class AccessDocs(BasePlugin):
    """Documents each operation's access from ROUTE_SCOPES: the schemes and scope of a protected one
    with its 401 and 403 problems, `security: []` for an open one. CDS Hooks routes document their own."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        route = re.sub(r"\{(\w+)\}", r"<\1>", path or "")
        scope = ROUTE_SCOPES.get(route, "knowledge")
        for operation in (operations or {}).values():
            if scope is None:
                operation["security"] = []
            elif scope in ("triage", "knowledge"):
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                note = f"Needs the `{scope}` scope (an API key or a bearer JWT that carries it)."
                operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".lstrip()
                operation.setdefault("responses", {})
                operation["responses"].setdefault("401", "UNAUTHORIZED")
                operation["responses"].setdefault("403", "FORBIDDEN")


def build_policy(config: flask.Config) -> AccessPolicy:
    keys = load_api_keys(config["API_KEYS_FILE"]) if config["API_KEYS_FILE"] else ()
    verifier = None
    if config["API_JWT_TRUST_FILE"]:
        verifier = TokenVerifier(
            load_trust_file(config["API_JWT_TRUST_FILE"]),
            leeway=config["CDS_JWT_LEEWAY_SECONDS"],
            max_lifetime=config["CDS_JWT_MAX_LIFETIME_SECONDS"],
            refuse_replay=False,  # access tokens are reused until they expire
        )
    audience = config["API_JWT_AUDIENCE"] or config["PUBLIC_BASE_URL"].rstrip("/")
    if verifier is not None and not audience:
        raise ValueError("API_JWT_TRUST_FILE needs API_JWT_AUDIENCE or PUBLIC_BASE_URL (the tokens' aud)")
    return AccessPolicy(config["API_OPEN"], keys, verifier, audience)


def init_access(app: flask.Flask) -> None:
    policy = build_policy(app.config)
    app.extensions["triage_access"] = policy
    app.before_request(_check_access)
    origins = as_list(app.config["CORS_ORIGINS"])
    if origins:
        CORS(
            app,
            resources={r"/(v1|cds-services)(/.*)?": {"origins": origins}},
            methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Prefer", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Knowledge-Version", "Preference-Applied"],
            max_age=600,
        )
    if policy.open:
        log.warning("api_open", message="/v1 answers without credentials (TRIAGE_API_OPEN). Loopback use only.")
    elif not policy.keys and policy.verifier is None:
        log.warning("api_no_credentials", message="No API keys or JWT issuers configured: every /v1 call gets 401.")
    log.info("access_ready", api_keys=len(policy.keys), jwt=policy.verifier is not None, cors_origins=len(origins))


def _check_access() -> None:
    request = flask.request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not five
    rule = request.url_rule
    if rule is None or request.method == "OPTIONS":
        return  # routing answers 404/405 itself; CORS preflights carry no credentials
    route = route_template(rule.rule)
    scope = ROUTE_SCOPES.get(route, "knowledge")
    flag = OPENED_BY.get(route)
    app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
    if scope in (None, "cds") or (flag and app.config[flag]):
        return
    policy: AccessPolicy = app.extensions["triage_access"]
    environ = request.environ  # werkzeug's header lookup raises and catches KeyError for an absent header
    try:
        caller = policy.authenticate(environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION"))
    except Unauthenticated as exc:
        log.warning("access_denied", status=401, reason=exc.reason, key_id=exc.key_id, route=route)
        abort(
            401,
            message="Send an API key in X-API-Key or a bearer JWT in Authorization.",
            headers={"WWW-Authenticate": WWW_AUTHENTICATE},
        )
    structlog.contextvars.bind_contextvars(caller=caller.id)
    if scope not in caller.scopes:
        log.warning("access_denied", status=403, reason="scope", required=scope, route=route)
        abort(403, message=f"This credential lacks the '{scope}' scope.")
