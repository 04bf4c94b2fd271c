"""The service's settings from the environment: every `TRIAGE_<NAME>`, typed and checked once.

One reader for the app factory, `deploy/gunicorn.conf.py` and anything else that starts the service
(environs, which is built on marshmallow). A boolean is true/false, 1/0, yes/no or on/off in any case;
a number must be a whole (or decimal) number in its range; a `TRIAGE_` name the service does not know
is an error, so a misspelt security setting can never pass silently. Every problem is reported at
once, naming the variable and what it accepts, never the value it had (it may be a secret).
"""

from __future__ import annotations

import os
from typing import Any

import environs
from marshmallow.validate import Range

from service.config import DefaultConfig

PREFIX = "TRIAGE_"
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")
# Settings that are the service's own constants, not for a deployment to change.
FIXED = ("API_TITLE", "API_VERSION", "OPENAPI_VERSION", "OPENAPI_URL_PREFIX", "OPENAPI_JSON_PATH", "API_SPEC_OPTIONS")
# Lower bounds where zero or less would make no sense (every other number: 0 or more).
AT_LEAST_ONE = (
    "MAX_CONTENT_LENGTH",
    "MAX_FORM_MEMORY_SIZE",
    "BATCH_MAX_CASES",
    "BATCH_MAX_CONTENT_LENGTH",
    "CDS_JWT_MAX_LIFETIME_SECONDS",
    "CDS_MAX_CONTENT_LENGTH",
    "CDS_MAX_OBSERVATION_AGE_DAYS",
    "CDS_FHIR_MAX_CONCURRENT",
)


class SettingsError(ValueError):
    """The environment names an unknown setting or gives one a value it cannot take; `problems` lists each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid settings:\n  - " + "\n  - ".join(problems))


def settable() -> dict[str, Any]:
    """Each setting a deployment may give as TRIAGE_<NAME>, with its default (which sets its type)."""
    return {n: v for n, v in vars(DefaultConfig).items() if n.isupper() and n not in FIXED and n != "LOG_LEVEL"}


def from_environment() -> dict[str, Any]:
    """The settings os.environ gives (by name, without the prefix), typed; raises SettingsError."""
    known = settable()
    problems = [
        f"{name}: not a setting of this service (known: {', '.join(PREFIX + k for k in known)})"
        for name in sorted(os.environ)
        if name.startswith(PREFIX) and name[len(PREFIX) :] not in known
    ]
    env = environs.Env(eager=False)
    env.add_parser("flag", _flag)
    out = {
        name: _read(env, PREFIX + name, name, default) for name, default in known.items() if PREFIX + name in os.environ
    }
    return _checked(env, out, problems)


# gunicorn's own settings (deploy/gunicorn.conf.py): name -> (default, smallest and largest value allowed).
SERVER = {
    "PORT": (8000, 1, 65535),
    "WEB_CONCURRENCY": (2, 1, None),
    "GUNICORN_THREADS": (4, 1, None),
    "GUNICORN_TIMEOUT": (30, 1, None),
    "GUNICORN_GRACEFUL_TIMEOUT": (25, 0, None),
    "GUNICORN_MAX_REQUESTS": (50000, 0, None),
}


def server_from_environment() -> dict[str, int]:
    """gunicorn's numbers from os.environ, each with its default; raises SettingsError naming the bad ones."""
    env = environs.Env(eager=False)
    out = {
        name: env.int(name, default, validate=Range(min=least, max=most))
        for name, (default, least, most) in SERVER.items()
    }
    return _checked(env, out, [])


def _checked(env: environs.Env, out: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """`out` once every read env deferred has succeeded; else SettingsError with `problems` and each failed read."""
    try:
        env.seal()
    except environs.EnvValidationError as exc:
        problems = [*problems, *(f"{name}: {' '.join(messages)}" for name, messages in exc.error_messages.items())]
    if problems:
        raise SettingsError(problems)
    return out


def _read(env: environs.Env, variable: str, name: str, default: Any) -> Any:
    if isinstance(default, bool):
        return env.flag(variable)
    if isinstance(default, int):
        return env.int(variable, validate=Range(min=1 if name in AT_LEAST_ONE else 0))
    if isinstance(default, float):
        return env.float(variable, validate=Range(min=0, min_inclusive=False))
    return env.str(variable)


def _flag(value: str) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise environs.EnvError(f"Not a boolean: use one of {', '.join(TRUE + FALSE)} (any case).")
