"""Static scans of what ships: checkov over deploy/ (the Kubernetes manifests and the Dockerfile) and bandit
over the runtime code (service/ and schemas/). Both must find nothing. A finding that does not apply is
waived beside what it excuses, with its reason:

- Kubernetes: checkov reads waivers only from annotations, `checkov.io/skipN: CKV_ID=reason` in the
  resource's metadata (the line it excuses carries a comment pointing there);
- Dockerfile: a `# checkov:skip=CKV_ID: reason` comment line just above the instruction;
- Python: `# nosec BXXX # reason` at the end of the line (the second `#` keeps bandit from reading the
  reason's words as test names), with the longer reason in the comment above.

The scanners live in their own virtualenv, .venv-scan, which `make test` builds from
tools/scan-requirements.txt (checkov's pins conflict with constraints.txt) and names in SCAN_VENV.
Without it these tests skip, except under CI (CI=true), where they fail. Neither scanner needs the network:
checkov runs with --skip-download, no API key, and no update check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.scan

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RUNTIME = ("service", "schemas")
CHECKOV_FRAMEWORKS = ("kubernetes", "dockerfile")
TIMEOUT_SECONDS = 300  # a scan takes a few seconds; this only bounds a hung one


def scanner(name: str) -> Path:
    venv = Path(os.environ.get("SCAN_VENV") or ROOT / ".venv-scan")
    path = venv / "bin" / name
    if not os.access(path, os.X_OK):
        message = f"{path} not found: `make test` installs it (tools/scan-requirements.txt into {venv.name})"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def offline_env() -> dict[str, str]:
    # Without the caller's checkov settings: an API key would send the scan online, and a CKV_SKIP_CHECK
    # or CKV_FRAMEWORK in someone's shell would quietly narrow it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_", "CHECKOV_"))}
    env.update(
        BC_SKIP_MAPPING="TRUE",  # no download of the platform's check id mapping
        CKV_SKIP_PACKAGE_UPDATE_CHECK="TRUE",  # no "new version available" lookup on PyPI
        LOG_LEVEL="WARNING",  # checkov reads it too; the project's own LOG_LEVEL may say DEBUG
    )
    return env


def scan(name: str, *args: str, cwd: Path) -> None:
    """Run a scanner offline; exit 1 means findings (read from its report), anything else a crash."""
    done = subprocess.run(
        [str(scanner(name)), *args], capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env=offline_env(), cwd=cwd
    )
    assert done.returncode in {0, 1}, f"{name} crashed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


# ---------------------------------------------------------------- checkov


def run_checkov(directory: Path, out: Path) -> list[dict[str, Any]]:
    """One report per framework: {"check_type", "summary", "results": {"failed_checks", ...}}."""
    scan(
        "checkov",
        *("--directory", str(directory), "--framework", *CHECKOV_FRAMEWORKS, "--skip-download", "--compact"),
        *("--output", "json", "--output-file-path", str(out)),
        cwd=directory,
    )
    reports = json.loads((out / "results_json.json").read_text(encoding="utf-8"))
    return reports if isinstance(reports, list) else [reports]


def describe(check: dict[str, Any], scanned: Path = DEPLOY) -> str:
    first, last = check["file_line_range"]
    where = f"{scanned.name}{check['file_path']}:{first}-{last}"  # file_path: from the scanned directory
    return f"{check['check_id']} {check['check_name']}: {check['resource']} ({where})"


def test_checkov_finds_nothing_in_deploy(tmp_path: Path) -> None:
    reports = {r["check_type"]: r for r in run_checkov(DEPLOY, tmp_path)}
    assert sorted(reports) == sorted(CHECKOV_FRAMEWORKS), "a framework found nothing to scan in deploy/"
    failed = [describe(c) for r in reports.values() for c in r["results"]["failed_checks"]]
    assert not failed, "checkov findings (fix them, or waive one beside its line with a reason):\n" + "\n".join(failed)
    for framework, report in reports.items():
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, f"{framework}: checkov could not parse a file"
        assert summary["passed"] > 50, f"{framework}: only {summary['passed']} checks ran"
        # Every waiver carries a reason a reviewer can judge (checkov fills in "No comment provided").
        for check in report["results"]["skipped_checks"]:
            reason = (check["check_result"].get("suppress_comment") or "").strip()
            assert len(reason.split()) >= 5 and reason != "No comment provided", f"{describe(check)}: {reason!r}"


def test_checkov_reports_a_finding(tmp_path: Path) -> None:
    """The scan is not vacuous: a copy of deploy/ with two regressions fails on both."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    deployment, dockerfile = copy / "k8s" / "deployment.yaml", copy / "Dockerfile"
    text = deployment.read_text(encoding="utf-8")
    assert "allowPrivilegeEscalation: false" in text
    deployment.write_text(text.replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"))
    text = dockerfile.read_text(encoding="utf-8")
    assert "\nUSER 10001:10001\n" in text
    dockerfile.write_text(text.replace("\nUSER 10001:10001\n", "\nUSER root\n"))
    out = tmp_path / "out"
    failed = {c["check_id"] for r in run_checkov(copy, out) for c in r["results"]["failed_checks"]}
    assert failed == {"CKV_K8S_20", "CKV_DOCKER_8"}, failed


# ---------------------------------------------------------------- bandit


def run_bandit(paths: list[Path], out: Path) -> dict[str, Any]:
    report = out / "bandit.json"
    scan(
        "bandit",
        *("--recursive", "--severity-level", "all", "--confidence-level", "all", "--quiet"),
        *("--format", "json", "--output", str(report), *map(str, paths)),
        cwd=ROOT,
    )
    return json.loads(report.read_text(encoding="utf-8"))


def issues(report: dict[str, Any]) -> list[str]:
    found = []
    for i in report["results"]:
        path = Path(i["filename"]).resolve()
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        severity = f"{i['issue_severity']}/{i['issue_confidence']}"
        found.append(f"{i['test_id']} {i['test_name']} ({severity}): {where}:{i['line_number']}: {i['issue_text']}")
    return found


def test_bandit_finds_nothing_in_the_runtime_code(tmp_path: Path) -> None:
    report = run_bandit([ROOT / d for d in RUNTIME], tmp_path)
    found = issues(report)
    assert not found, "bandit findings (fix them, or `# nosec BXXX # reason` beside the line):\n" + "\n".join(found)
    assert not report["errors"], f"bandit could not scan: {report['errors']}"
    assert report["metrics"]["_totals"]["loc"] > 1000, "bandit scanned next to nothing"


def test_bandit_reports_a_finding(tmp_path: Path) -> None:
    """The scan is not vacuous: service/engine/reader.py without its waiver is reported."""
    source = (ROOT / "service" / "engine" / "reader.py").read_text(encoding="utf-8")
    assert "# nosec B102" in source
    (tmp_path / "reader.py").write_text(source.replace("# nosec B102", "#"), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    report = run_bandit([tmp_path / "reader.py"], out)
    assert [i["test_id"] for i in report["results"]] == ["B102"], issues(report)


NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")


def test_every_nosec_names_its_test_and_reason() -> None:
    """A bare `# nosec` hides every finding on its line; a waiver names the one it excuses and says why."""
    bad = []
    for directory in RUNTIME:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                match = NOSEC.search(line)
                if not match:
                    continue
                ids, _, reason = match["rest"].partition("#")
                if not re.fullmatch(r"\s*B\d{3}(\s*,\s*B\d{3})*\s*", ids) or len(reason.split()) < 3:
                    bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bad, "write `# nosec BXXX # reason`:\n" + "\n".join(bad)
