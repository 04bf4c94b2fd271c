"""Defaults; each can be overridden by an environment variable TRIAGE_<NAME> or a test dict."""

import os


class DefaultConfig:
    # Knowledge base folder (the bundled one when empty) and, optionally, the source texts
    # to verify every citation against at start-up.
    KNOWLEDGE_DIR = ""
    SOURCE_TEXTS_DIR = ""
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    MAX_CONTENT_LENGTH = 64 * 1024  # a full request is under 2 KiB
    MAX_FORM_MEMORY_SIZE = 64 * 1024
    # POST /v1/triage/batch: cases per request, and its own body limit (instead of MAX_CONTENT_LENGTH).
    # A full exam is under 2 KiB, so 500 of them fit in 4 MiB with room for whitespace.
    BATCH_MAX_CASES = 500  # openapi.yaml states this default (schemas/batch.py DEFAULT_MAX_CASES)
    BATCH_MAX_CONTENT_LENGTH = 4 * 1024 * 1024

    # --- access to /v1, /metrics and the docs (see docs/deployment.md) ---
    API_OPEN = False  # no credentials needed: `make run` on loopback only; gunicorn refuses it elsewhere
    API_KEYS_FILE = ""  # YAML: keys: [{id, sha256, scopes, revoked}]; only hashes, never keys
    API_JWT_TRUST_FILE = ""  # bearer JWT issuers, same format as CDS_TRUST_FILE
    API_JWT_AUDIENCE = ""  # the `aud` API tokens must carry; PUBLIC_BASE_URL when empty
    METRICS_OPEN = False  # /metrics without credentials (restrict the network instead)
    DOCS_OPEN = False  # /openapi.json, /openapi.yaml without credentials
    PAGES_OPEN = True  # the clinician pages (/knowledge, /knowledge/rules/<id>) without credentials: no patient data
    # Key for the findings fingerprint in the audit log (HMAC-SHA256). Without it the fingerprint is a
    # plain SHA-256, which someone could reverse by trying every combination of findings.
    AUDIT_HASH_KEY = ""

    # --- CDS Hooks (see docs/ehr-integration.md) ---
    # The service's public base URL, e.g. https://cds.example.org. JWT audiences and card links are
    # built from it; without it, from the Host the request came to (fine behind no proxy only).
    PUBLIC_BASE_URL = ""
    CDS_TRUST_FILE = ""  # trusted issuers (iss, JWKS, jku allow-list); see deploy/cds-trust.example.yaml
    CDS_AUTH_DISABLED = False  # local development only: accept CDS Hooks calls without a JWT
    CDS_JWT_LEEWAY_SECONDS = 30
    CDS_JWT_MAX_LIFETIME_SECONDS = 3600
    CDS_JWKS_CACHE_SECONDS = 300
    # Where accepted CDS client JWT ids are remembered so that a replay is refused by every worker and
    # replica: redis://host:6379/0 (or rediss://) for more than one replica, sqlite:///<path> for one
    # host. Empty: gunicorn.conf.py makes an SQLite file its workers share (one process: its memory).
    REPLAY_STORE = ""
    CDS_FHIR_HOSTS = ""  # FHIR servers the service may read from: "host[:port]" list (comma-separated)
    CDS_FHIR_ALLOW_HTTP = False  # plain http to those hosts: loopback tests and local development only
    CDS_FHIR_TIMEOUT_SECONDS = 2.0  # per connect and per socket read
    # All FHIR reads of one call end within this; past it the call answers 412 at once. Below nginx's
    # read timeout for /cds-services (6 s), so a slow EHR never makes nginx re-send a call elsewhere.
    CDS_FHIR_DEADLINE_SECONDS = 4.0
    # FHIR reads waiting at once per worker process; one more gets 412 at once. Below GUNICORN_THREADS,
    # so a slow FHIR server cannot take every thread that serves /v1/triage.
    CDS_FHIR_MAX_CONCURRENT = 2
    CDS_MAPPING_FILE = ""  # a site's FHIR-to-findings mapping; the bundled one when empty
    CDS_MAX_OBSERVATION_AGE_DAYS = 90  # older exam Observations are reported, not used
    CDS_MAX_CONTENT_LENGTH = 2 * 1024 * 1024  # prefetch can carry 100 Observations and more
    CORS_ORIGINS = ""  # browser origins allowed to call /v1 and /cds-services (comma-separated); none by default

    API_TITLE = "Leg-raise triage API"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    API_SPEC_OPTIONS = {
        "info": {
            "description": (
                "Clinical decision support for patients who cannot lift a straight leg while lying down, "
                "or with low back, hip or leg symptoms around that. Takes structured exam findings and returns "
                "a triage level, ranked candidate causes, referrals, self-management advice and the questions "
                "still to ask, each traced to the rule and source text section behind it. An omitted finding is "
                "unknown, never absent. Errors are RFC 9457 application/problem+json."
            ),
        },
    }
