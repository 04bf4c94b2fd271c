"""`python -m bench` runs end to end on the tiny budget, so `make bench` cannot rot. No timing is asserted:
the figures of a tiny run mean nothing, and the machine is shared."""

from __future__ import annotations

import contextlib
import copy
import io
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import requests

import bench.__main__ as bench_main
from bench import bare, http, report, stats
from bench.app import canned_answers

JSON_ONLY = {"Content-Type": "application/json"}

pytestmark = pytest.mark.bench

SECTIONS = (
    "## Summary",
    "## 1. HTTP",
    "### Throughput at saturation",
    "### Latency at half the control's saturating rate",
    "## 2. Engine",
    "## 3. zen-engine",
    "## 4. Batch",
    "## 5. CDS Hooks",
    "## 6. Cold start",
    "## Figure",
    "## Profile and what changed",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny run through main(): exit status, report path, printed text, the measured results."""
    if not shutil.which("wrk"):
        pytest.fail("wrk is not installed: bash tools/ensure-debian-packages.sh wrk (make test does it)")
    out = tmp_path_factory.mktemp("bench") / "performance.md"
    captured = {}
    measure = bench_main.measure

    def recording(budget):
        captured["results"] = measure(budget)
        return captured["results"]

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench_main, "measure", recording)
        with contextlib.redirect_stdout(printed):
            status = bench_main.main(["--budget", "tiny", "--out", str(out)])
    return {"status": status, "out": out, "printed": printed.getvalue(), "results": captured["results"]}


def tables(markdown: str) -> list[list[str]]:
    """Every markdown table as its lines."""
    found, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def test_tiny_run_takes_every_figure(tiny):
    errors = {name: data["error"] for name, data in tiny["results"]["sections"].items() if "error" in data}
    assert tiny["status"] == 0, errors
    assert not errors
    # tests/live.py's harness times each start to the first 200 from /readyz (the cold start figure)
    assert all(0 < t < 60 for t in tiny["results"]["sections"]["cold"]["times_s"])


def test_report_has_every_section_and_is_printed(tiny):
    text = tiny["out"].read_text(encoding="utf-8")
    positions = [text.find(heading) for heading in SECTIONS]
    assert -1 not in positions, [h for h, p in zip(SECTIONS, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    assert text.strip() in tiny["printed"]
    for row in ("| CPU |", "| cores |", "| Python |", "| platform |", "| flask |", "| gunicorn |"):
        assert row in text
    for row in ("| marshmallow |", "| orjson |", "| zen-engine |", "| wrk | wrk ", "| machine speed: "):
        assert row in text
    assert text.count("**How measured.**") == 6
    assert "Budget `tiny`" in text


def test_every_figure_table_has_a_target_column(tiny):
    text = tiny["out"].read_text(encoding="utf-8")
    # The figures run from the summary to the figure; the profile notes after it are prose and tables
    # of the profile, not measurements with targets.
    body = text[text.index("## Summary") : text.index("## Profile and what changed")]
    found = tables(body)
    assert len(found) >= 9
    for table in found:
        assert "target / met?" in table[0], table[0]
        width = table[0].count("|")
        assert all(line.count("|") == width for line in table), table


def test_figure_is_a_png_embedded_in_the_report(tiny):
    png = tiny["out"].with_suffix(".png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000
    assert f"]({png.name})" in tiny["out"].read_text(encoding="utf-8")


def test_profile_notes_fill_the_marked_placeholder(tiny, tmp_path, monkeypatch):
    text = tiny["out"].read_text(encoding="utf-8")
    assert report.PROFILE_MARKER in text
    notes = tmp_path / "profile_notes.md"
    notes.write_text("The audit line was the hot spot; it is now written once per decision.\n")
    monkeypatch.setattr(report, "PROFILE_NOTES", notes)
    filled = report.render(tiny["results"], "performance.png")
    after = filled[filled.index("## Profile and what changed") :]
    assert report.PROFILE_MARKER in after and "The audit line was the hot spot" in after
    assert "Placeholder" not in after


def test_a_failed_measurement_is_reported_and_exits_non_zero(tiny, tmp_path, monkeypatch):
    results = copy.deepcopy(tiny["results"])
    results["sections"]["zen"] = {"error": "MeasurementError: agree on 3 of 4"}
    monkeypatch.setattr(bench_main, "measure", lambda budget: results)
    out = tmp_path / "performance.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench_main.main(["--budget", "tiny", "--out", str(out)]) == 1
    text = out.read_text(encoding="utf-8")
    zen = text[text.index("## 3. zen-engine") : text.index("## 4. Batch")]
    assert "Measurement failed" in zen and "agree on 3 of 4" in zen
    assert re.search(r"\| 3\. zen-engine \| .* \| not measured \| ≤ 1 / not measured \|", text)
    assert "Measurement failed in: zen" in text


def test_target_cells():
    assert report.check(0.9, "≥", 0.85) == "≥ 0.85 / yes"
    assert report.check(0.8, "≥", 0.85) == "≥ 0.85 / **NO**"
    assert report.check(None, "≤", 1.5) == "≤ 1.5 / not measured"
    assert report.check(2.0, "<", 2.0, "{:g} s") == "< 2 s / **NO**"


def test_the_profile_runs_and_names_the_route(capsys):
    from bench import profile

    assert profile.main(["--calls", "30"]) == 0
    out = capsys.readouterr().out
    assert "/v1/triage:" in out and "µs per call" in out
    assert "triage" in out.split("\n", 1)[1]  # the call tree names the view function


def test_the_paced_runs_hold_the_offered_rate(tiny):
    """wrk's fixed send schedule (bench/wrk.py) offers the target rate to both endpoints alike: never
    more, and not much less when the server keeps up easily (half its saturating rate)."""
    paced = tiny["results"]["sections"]["http"]["paced"]
    for side in ("triage", "control"):
        assert 0.5 * paced["target_rate"] <= paced["rate"][side] <= 1.1 * paced["target_rate"], (side, paced)


def test_the_interval_of_a_median_of_nine_rounds():
    # Order statistics: for 9 rounds the narrowest interval with >= 90% coverage is the 2nd to the
    # 8th smallest, whose exact coverage is 1 - 2 x 10/512.
    ratios = [0.89, 1.26, 0.80, 0.70, 1.01, 0.86, 0.90, 0.93, 0.94]
    found = stats.median_interval(ratios)
    assert (found.low, found.high) == (0.80, 1.01)
    assert found.coverage == pytest.approx(1 - 20 / 512)
    assert stats.median_interval([1.0, 2.0, 3.0, 4.0]) is None  # 4 rounds cannot give 90%


def test_a_target_is_settled_only_when_the_interval_lies_on_one_side():
    interval = stats.Interval(0.80, 1.01, 0.96)
    assert not stats.settles(interval, "≥", 0.85)
    assert stats.settles(stats.Interval(0.86, 1.01, 0.96), "≥", 0.85)  # met
    assert stats.settles(stats.Interval(0.70, 0.84, 0.96), "≥", 0.85)  # missed
    assert stats.settles(stats.Interval(0.9, 1.5, 0.96), "≤", 1.5)
    assert not stats.settles(stats.Interval(0.9, 1.6, 0.96), "≤", 1.5)
    assert not stats.settles(None, "≥", 0.85)
    assert report.settled_cell(interval, "≥", 0.85) == "straddles 0.85: **not settled** by this run"
    met, missed = stats.Interval(0.86, 1.01, 0.96), stats.Interval(0.55, 0.56, 0.96)
    assert report.settled_cell(met, "≥", 0.85) == "wholly on one side of 0.85: met, settled by this run"
    assert report.settled_cell(missed, "≥", 0.8) == "wholly on one side of 0.8: **missed**, settled by this run"
    assert report.settled_cell(stats.Interval(1.6, 2.0, 0.96), "≤", 1.5).startswith(
        "wholly on one side of 1.5: **missed**"
    )


def test_the_summary_names_the_targets_a_run_leaves_open(tiny):
    results = copy.deepcopy(tiny["results"])
    results["sections"]["http"]["saturation"]["ratio_interval"] = [0.80, 1.01, 0.96]
    text = report.render(results, "performance.png")
    summary = text.split("## Summary", 1)[1].split("## 1.", 1)[0]
    assert "Not settled by this run" in summary and "HTTP throughput ratio (0.80 to 1.01" in summary
    results["sections"]["http"]["saturation"]["ratio_interval"] = [0.90, 1.01, 0.96]
    for side in ("triage", "control"):
        results["sections"]["http"]["saturation"]["bare"][side]["ratio_interval"] = [0.95, 1.01, 0.96]
    results["sections"]["http"]["paced"]["ratio_interval"] = [0.90, 1.2, 0.96]
    results["sections"]["batch"]["ratio_interval"] = [6.0, 9.0, 0.96]
    assert "Not settled" not in report.render(results, "performance.png")


SIDES = ("triage", "control", "bare")


def test_saturation_rounds_measure_the_workers_cpu_per_request(tiny):
    # A tiny run recycles no worker, so every saturation round has its workers' CPU time, bare Flask's too.
    sat = tiny["results"]["sections"]["http"]["saturation"]
    assert tuple(sat["runs"]) == SIDES
    rows = [row for side in SIDES for row in sat["runs"][side]]
    assert rows and all(row["worker_cpu_us_per_request"] > 0 for row in rows)
    assert all(sat["cpu_us_per_request"][side] > 0 for side in SIDES)
    assert len(sat["cpu_round_ratios"]) == sat["rounds"]
    text = tiny["out"].read_text(encoding="utf-8")
    assert "workers' CPU per request, control ÷ triage" in text
    assert "workers' CPU µs per request" in tables(text[text.index("### Throughput at saturation") :])[0][0]
    for _, name in report.SATURATED:
        assert re.search(rf"\| {re.escape(name)} \| \d+ \| [\d.]+ \| [\d.]+ \| \d+ \| - \|", text), name


def test_the_tiny_run_compares_both_endpoints_with_bare_flask(tiny):
    sat = tiny["results"]["sections"]["http"]["saturation"]
    text = tiny["out"].read_text(encoding="utf-8")
    summary = text.split("## Summary", 1)[1].split("## 1.", 1)[0]
    for side, figure in (("triage", "/v1/triage"), ("control", "in-app control")):
        ratios = sat["bare"][side]
        assert len(ratios["round_ratios"]) == sat["rounds"]
        # one round: its ratio is the ratio of the totals
        assert ratios["ratio_median"] == pytest.approx(sat["rate"][side] / sat["rate"]["bare"])
        value = f"{ratios['ratio_median']:.2f}"
        assert re.search(
            rf"\| throughput {figure} ÷ bare Flask \(median of rounds\) \| {value} \| ≥ 0\.[89] /", summary
        )
        assert f"| ratio {side} ÷ bare Flask, median of rounds | {value} |" in text


def test_the_rounds_rotate_the_order_of_the_sides(tmp_path):
    """Each round starts with the next side, so drift hits all alike; the ratios pair the rounds' runs."""
    rates = {"triage": 80.0, "control": 90.0, "bare": 100.0}
    order = []

    class Recording(http.Load):
        def run(self, side, seconds, label):
            name = label.split()[0]
            order.append(name)
            assert side[0].name == ("bare" if name == "bare" else "bench")
            row = {"requests": rates[name], "seconds": 1.0, "rate": rates[name], "p50_ms": 1.0, "p99_ms": 2.0}
            return {**row, "worker_cpu_us_per_request": 1e6 / rates[name]}

    server, bare_server = SimpleNamespace(name="bench"), SimpleNamespace(name="bare")
    sat = http.saturation(Recording(tmp_path, 16), server, bare_server, [b"{}"], (1, 4, 0))
    rounds = [order[i : i + 3] for i in range(0, len(order), 3)]
    assert rounds == [list(SIDES), ["control", "bare", "triage"], ["bare", "triage", "control"], list(SIDES)]
    assert sat["ratio_median"] == pytest.approx(80 / 90)
    assert sat["bare"]["triage"]["ratio_median"] == pytest.approx(0.8)
    assert sat["bare"]["control"]["ratio_median"] == pytest.approx(0.9)
    assert sat["cpu_us_per_request"] == pytest.approx({side: 1e6 / rate for side, rate in rates.items()})


def test_the_answers_are_checked_to_be_the_size_of_triages_at_bare_flask_too(monkeypatch):
    sizes = {http.TRIAGE: 10, http.CONTROL: 10, bare.BARE: 11}

    def post(session, url, **kwargs):
        return SimpleNamespace(status_code=200, content=b"x" * sizes[url.split(":0", 1)[1]], text="")

    monkeypatch.setattr(http.requests.Session, "post", post)
    server = SimpleNamespace(url="http://bench:0")
    with pytest.raises(http.MeasurementError, match="/bench/bare 11 bytes"):
        http.check_answers(server, SimpleNamespace(url="http://bare:0"), [b"{}"])
    sizes[bare.BARE] = 10
    http.check_answers(server, SimpleNamespace(url="http://bare:0"), [b"{}"])


def test_bare_flask_imports_no_service_code():
    code = "import bench.bare, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'schemas')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=report.ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bare_flask_answers_the_canned_bytes_of_the_triage_answer(tmp_path, monkeypatch):
    answers = canned_answers()
    odd = (b'{"findings": "\xc2\xb5"}', b'{"note":"\xe2\x80\x94 \xc3\xa9"}')  # bytes beyond ASCII survive the file
    fallback = b'{"fallback": true}'
    path = bare.write_answers(tmp_path / "answers.json", {**answers, odd[0]: odd[1]}, fallback)
    monkeypatch.setenv(bare.ANSWERS_ENV, str(path))
    client = bare.create_bare_app().test_client()
    for body, answer in [*answers.items(), odd]:
        response = client.post(bare.BARE, data=body, content_type="application/json")
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.data == answer
    unknown = client.post(bare.BARE, data=b'{"findings": {}}', content_type="application/json")
    assert unknown.data == fallback
    assert client.post(bare.BARE, data=b"{", content_type="application/json").status_code == 400
    assert client.get("/readyz").status_code == 200


def test_the_bench_servers_check_the_api_key_as_deployed(tmp_path):
    """Access control stays on under load (issue 22): without the bench's key /v1/triage is a 401."""
    body = http.wire(http.typical_request())
    with http.serving(tmp_path, "keyed") as server:
        anonymous = requests.post(server.url + http.TRIAGE, data=body, headers=JSON_ONLY, timeout=10)
        keyed = http.keyed_session().post(server.url + http.TRIAGE, data=body, timeout=10)
    assert anonymous.status_code == 401
    assert keyed.status_code == 200
