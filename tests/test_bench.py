"""The benchmark code runs on a tiny budget, so `make bench` cannot rot. No timing is asserted."""

from bench import cds_hooks


def test_cds_benchmark_runs_and_reports(tmp_path):
    out = tmp_path / "performance.md"
    assert cds_hooks.main(["--requests", "3", "--rounds", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| p99 |" in text and "CDS Hooks call" in text
    assert "Cold start" in text
