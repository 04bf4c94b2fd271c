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
