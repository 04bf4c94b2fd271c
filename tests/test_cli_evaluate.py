"""`python -m service evaluate`: case files to JSONL results, and knowledge bases compared on them.

Each test runs the real command in a subprocess, as a reviewer would. The altered knowledge bases
are copies of the bundled one with one rule changed (RF-CES-BLADDER: retention or incontinence of
the bladder is an emergency; 000.seek.ces_bladder_bowel and 001.red.bladder_bowel).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import orjson
import pytest

from service.engine import evaluate
from service.knowledge import load_knowledge
from tests.knowledge_copies import knowledge_with

pytestmark = pytest.mark.cli

ROOT = Path(__file__).resolve().parents[1]
RETENTION = {"findings": {"bladder": "retention"}}
WEAK_LEG = {"findings": {"slr": {"result": "weak", "side": "left"}}}


def run(*args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=ROOT, input=stdin, capture_output=True, timeout=timeout
    )


def write_cases(path: Path, lines: list[object]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines))
    return path


BLADDER_RULE = "    when: {fact: findings.bladder, in: [retention, incontinence]}\n    then:\n      level: emergency\n"


def test_results_are_the_api_answers_and_bad_lines_are_numbered(tmp_path):
    cases = write_cases(
        tmp_path / "cases.jsonl", [RETENTION, b"", b"{not json", {"findings": {"bladdr": "x"}}, WEAK_LEG]
    )
    done = run("evaluate", str(cases), "-o", str(tmp_path / "out.jsonl"), "--no-progress")
    assert done.returncode == 3, done.stderr  # bad lines, nothing else wrong
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    kb = load_knowledge()
    assert [r["line"] for r in records] == [1, 3, 4, 5]  # the blank line 2 is skipped, not renumbered
    assert records[0]["answer"] == json.loads(orjson.dumps(evaluate(kb, RETENTION)))
    assert records[3]["answer"] == json.loads(orjson.dumps(evaluate(kb, WEAK_LEG)))
    assert records[1]["error"].startswith("invalid JSON")
    assert records[2]["fields"] == {"findings": {"bladdr": ["Unknown field."]}}
    stderr = done.stderr.decode()
    assert "line 3: invalid JSON" in stderr and "line 4: does not match the request schema (findings.bladdr)" in stderr


def test_a_clean_file_exits_0_and_shows_progress_on_a_terminal(tmp_path):
    cases = write_cases(tmp_path / "cases.jsonl", [RETENTION, WEAK_LEG] * 5)
    terminal, stderr = pty.openpty()  # the bar is drawn only when stderr is a terminal
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns, not 0
    try:
        command = [sys.executable, "-m", "service", "evaluate", str(cases)]
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, timeout=120)
        os.close(stderr)
        shown = _read_all(terminal)
    finally:
        os.close(terminal)
    assert done.returncode == 0, shown
    assert len(done.stdout.splitlines()) == 10  # results on stdout without -o
    assert b"10/10" in shown  # tqdm's bar on stderr


def _read_all(terminal: int) -> bytes:
    # What the command wrote to its terminal: read until the (closed) other end reports EIO.
    chunks = []
    while True:
        try:
            chunk = os.read(terminal, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_stderr_to_a_file_gets_no_progress_bar_redraws(tmp_path):
    # A log file (not a terminal) must not fill with the bar's carriage returns and escape codes.
    cases = write_cases(tmp_path / "cases.jsonl", [RETENTION, b"{not json", WEAK_LEG] * 5)
    with (tmp_path / "stderr.log").open("wb") as log:
        command = [sys.executable, "-m", "service", "evaluate", str(cases), "-o", str(tmp_path / "out.jsonl")]
        done = subprocess.run(command, cwd=ROOT, stderr=log, timeout=120)
    assert done.returncode == 3  # the bad lines: reported in the file, plainly
    logged = (tmp_path / "stderr.log").read_bytes()
    assert b"\r" not in logged and b"\x1b" not in logged, logged
    assert b"line 2: invalid JSON" in logged and b"5 bad line(s)" in logged


def test_stdin_works_too():
    done = run("evaluate", "-", "--no-progress", stdin=orjson.dumps(RETENTION) + b"\n")
    assert done.returncode == 0 and json.loads(done.stdout)["answer"]["triage"]["level"] == "emergency"


OLDER_FALL = {
    "patient": {"age": 80},
    "findings": {"history": {"trauma": "present"}, "function": {"walking_affected": "present"}},
}
OLDER_FALL_RULE = "      level: emergency\n      causes: {hip_or_pelvic_fracture: 3}\n"


def test_compare_names_the_changed_cases_and_refuses_a_downgrade(tmp_path):
    # The altered knowledge makes an older patient's fall with walking affected (RF-OLDER-FALL, policy SP-7)
    # urgent instead of an emergency: less urgent. (A rule citing a text's emergency words cannot be
    # lowered at all: the loader refuses it, policy SP-2.)
    other = knowledge_with(
        tmp_path, old=OLDER_FALL_RULE, new=OLDER_FALL_RULE.replace("level: emergency", "level: urgent")
    )
    cases = write_cases(tmp_path / "cases.jsonl", [WEAK_LEG, OLDER_FALL])
    done = run("evaluate", str(cases), "--compare", str(other), "-o", str(tmp_path / "out.jsonl"), "--no-progress")
    assert done.returncode == 1, done.stderr
    stderr = done.stderr.decode()
    assert "line 2: level emergency -> urgent (LESS URGENT)" in stderr
    assert "line 1:" not in stderr  # the weak leg is answered alike
    assert "1 of 2 cases changed, 1 less urgent" in stderr
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert "change" not in records[0]
    assert records[1]["change"]["level"] == ["emergency", "urgent"] and records[1]["change"]["less_urgent"]

    allowed = run("evaluate", str(cases), "--compare", str(other), "--allow-downgrade", "--no-progress")
    assert allowed.returncode == 0


def test_compare_names_the_rules_responsible(tmp_path):
    # Without the bladder rule, retention no longer fires it: the rule is named as removed.
    other = knowledge_with(tmp_path, old="in: [retention, incontinence]}", new="in: [incontinence]}")
    cases = write_cases(tmp_path / "cases.jsonl", [RETENTION])
    done = run("evaluate", str(cases), "--compare", str(other), "--no-progress", "--allow-downgrade")
    stderr = done.stderr.decode()
    assert "line 1: level emergency ->" in stderr and "-RF-CES-BLADDER" in stderr
    assert done.returncode == 0


def test_a_more_urgent_change_passes(tmp_path):
    # RF-UNRELENTING-PAIN (000.seek.unrelenting_or_both_legs) raised from urgent to emergency.
    rule = "    when: {fact: findings.pain.unrelenting, is: present}\n    then:\n      level: urgent\n"
    other = knowledge_with(tmp_path, old=rule, new=rule.replace("level: urgent", "level: emergency"))
    unrelenting = {
        "findings": {"slr": {"result": "weak"}, "pain": {"locations": ["low_back"], "unrelenting": "present"}}
    }
    cases = write_cases(tmp_path / "cases.jsonl", [unrelenting, WEAK_LEG])
    done = run("evaluate", str(cases), "--compare", str(other), "--no-progress")
    assert done.returncode == 0, done.stderr
    stderr = done.stderr.decode()
    assert "line 1: level urgent -> emergency" in stderr and "LESS URGENT" not in stderr


def test_a_knowledge_base_that_does_not_load_is_a_usage_error(tmp_path):
    other = knowledge_with(tmp_path, old="level: emergency", new="level: soonish")
    cases = write_cases(tmp_path / "cases.jsonl", [RETENTION])
    done = run("evaluate", str(cases), "--compare", str(other), "--no-progress")
    assert done.returncode == 2 and "knowledge base does not load" in done.stderr.decode()
    assert run("evaluate", str(tmp_path / "missing.jsonl")).returncode == 2


def test_a_large_file_streams_in_bounded_memory(tmp_path):
    # 20,000 cases: memory after them must not have grown with the file. The peak is the child's own
    # (VmHWM, reset by exec): Linux keeps ru_maxrss across exec, so it would report pytest's size.
    script = (
        "import re, sys, runpy\n"
        "sys.argv = ['service', 'evaluate', sys.argv[1], '-o', sys.argv[2], '--no-progress']\n"
        "try:\n    runpy.run_module('service', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print(hwm, code)\n"
    )
    peaks = {}
    for n in (2_000, 20_000):
        cases = write_cases(tmp_path / f"cases{n}.jsonl", [RETENTION, WEAK_LEG] * (n // 2))
        done = subprocess.run(
            [sys.executable, "-c", script, str(cases), str(tmp_path / f"out{n}.jsonl")],
            cwd=ROOT, capture_output=True, timeout=300,
        )  # fmt: skip
        peak_kib, code = done.stdout.split()
        assert code == b"0", done.stderr
        peaks[n] = int(peak_kib)
        assert (tmp_path / f"out{n}.jsonl").read_bytes().count(b"\n") == n
    assert peaks[20_000] < peaks[2_000] + 20_000  # KiB: ten times the cases, not ten times the memory
