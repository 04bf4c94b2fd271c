"""Issue 20: one typed reading of the TRIAGE_* environment (service/settings.py), used by the app
factory and deploy/gunicorn.conf.py. A spelling of "false" is false; anything unclear stops start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import create_app
from service.settings import SettingsError, from_environment

ROOT = Path(__file__).resolve().parents[1]
FALSE_SPELLINGS = ["false", "False", "FALSE", "0", "no", "No", "off", "OFF", " off "]
TRUE_SPELLINGS = ["true", "True", "1", "yes", "YES", "on", "On"]


@pytest.mark.parametrize("spelling", FALSE_SPELLINGS)
def test_every_spelling_of_false_keeps_access_control_on(monkeypatch, spelling):
    """The old reading made "False", "no" and "off" truthy strings: /v1 open, CDS JWTs unchecked."""
    monkeypatch.setenv("TRIAGE_API_OPEN", spelling)
    monkeypatch.setenv("TRIAGE_CDS_AUTH_DISABLED", spelling)
    app = create_app({"TESTING": True})
    assert app.config["API_OPEN"] is False and app.config["CDS_AUTH_DISABLED"] is False
    response = app.test_client().post("/v1/triage", json={"findings": {}})
    assert response.status_code == 401


@pytest.mark.parametrize("spelling", TRUE_SPELLINGS)
def test_every_spelling_of_true_is_true(monkeypatch, spelling):
    monkeypatch.setenv("TRIAGE_METRICS_OPEN", spelling)
    assert from_environment() == {"METRICS_OPEN": True}


def test_numbers_are_typed_and_checked(monkeypatch):
    monkeypatch.setenv("TRIAGE_BATCH_MAX_CASES", "20")
    monkeypatch.setenv("TRIAGE_CDS_FHIR_TIMEOUT_SECONDS", "1.5")
    assert from_environment() == {"BATCH_MAX_CASES": 20, "CDS_FHIR_TIMEOUT_SECONDS": 1.5}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRIAGE_API_OPEN", "maybe", "TRIAGE_API_OPEN: Not a boolean: use one of true, 1, yes, on, false, 0, no, off"),
        ("TRIAGE_BATCH_MAX_CASES", "0", "TRIAGE_BATCH_MAX_CASES: Must be greater than or equal to 1."),
        ("TRIAGE_BATCH_MAX_CASES", "twenty", "TRIAGE_BATCH_MAX_CASES: Not a valid integer."),
        ("TRIAGE_CDS_FHIR_TIMEOUT_SECONDS", "-1", "TRIAGE_CDS_FHIR_TIMEOUT_SECONDS: Must be greater than 0."),
        ("TRIAGE_API_OPNE", "true", "TRIAGE_API_OPNE: not a setting of this service (known: TRIAGE_KNOWLEDGE_DIR"),
    ],
)
def test_an_unclear_setting_stops_start_up_naming_it(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        create_app({"TESTING": True})
    assert message in str(info.value)
    assert value not in str(info.value).replace(variable, "")  # the value itself is never echoed


def test_every_problem_is_listed_at_once(monkeypatch):
    monkeypatch.setenv("TRIAGE_API_OPEN", "maybe")
    monkeypatch.setenv("TRIAGE_DOCS_OPNE", "1")
    with pytest.raises(SettingsError) as info:
        from_environment()
    assert [p.split(":")[0] for p in info.value.problems] == ["TRIAGE_DOCS_OPNE", "TRIAGE_API_OPEN"]


def test_a_secret_is_never_echoed(monkeypatch):
    monkeypatch.setenv("TRIAGE_AUDIT_HASH_KEY", "hunter2-secret")
    monkeypatch.setenv("TRIAGE_CDS_JWKS_CACHE_SECONDS", "hunter2-secret")
    with pytest.raises(SettingsError) as info:
        from_environment()
    assert "hunter2" not in str(info.value)


@pytest.mark.cli
def test_a_lower_case_log_level_starts_the_app():
    """Issue 20: LOG_LEVEL=warning (as gunicorn spells levels) crashed the app factory with a traceback."""
    code = "from service import create_app; create_app({'TESTING': True}); print('started')"
    env = {**os.environ, "LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip().endswith("started")
