"""`bench suite`'s time before (issue 24): which stored run counts as before, and the rows."""

from __future__ import annotations

import json

import pytest

from bench.suite import before_run, compared_rows
from lab.errors import ConfigError


def _times(bodies: float, margin: float | None = None) -> dict:
    return {
        "cases": 2,
        "lab start": 1.0,
        "case bodies": bodies,
        "per-case harness": 0.5,
        "lab stop": 0.5,
        "smallest client timeout margin (s)": margin,
    }


def test_before_is_the_named_run_or_one_line_why_not(tmp_path):
    run = tmp_path / "20261202-024003"
    run.mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        before_run(tmp_path / "bench" / "now" / "suite", str(run))
    (run / "summary.json").write_text("[]")
    assert before_run(tmp_path / "bench" / "now" / "suite", str(run)) == run


def test_before_is_the_previous_bench_suites_run(tmp_path):
    bench = tmp_path / "bench"
    old_run, newer_run = tmp_path / "r1", tmp_path / "r2"
    for stamp, folder in (("20261201-100000", old_run), ("20261202-100000", newer_run)):
        (bench / stamp).mkdir(parents=True)
        folder.mkdir()
        (folder / "summary.json").write_text("[]")
        (bench / stamp / "suite.json").write_text(json.dumps({"run": str(folder)}))
    (bench / "20261203-100000").mkdir()  # this benchmark's own stamp: later ones do not count
    assert before_run(bench / "20261203-100000" / "suite", None) == newer_run
    assert before_run(bench / "20261202-100000" / "suite", None) == old_run
    assert before_run(bench / "20261201-100000" / "suite", None) is None


def test_rows_show_each_scenarios_time_before_and_its_margin():
    rows = compared_rows(
        {"test_s5": _times(40.0, 0.78), "test_s6": _times(3.0)},
        {"test_s5": _times(160.0)},
        "20261202-024003",
    )
    s5, s6 = rows
    assert s5["configured"] == "before: 162 s (20261202-024003)"
    assert s5["measured"].startswith("42 s: lab start 1.0, case bodies 40.0")
    assert s5["met"] is True and "0.78" in s5["measured"]
    assert s6["configured"] == "" and s6["met"] is None


def test_a_cut_down_run_is_compared_with_the_same_modules_before():
    from bench.suite import same_modules

    stored = [{"name": "test_s5_filters.a"}, {"name": "test_s5_session_log.b"}, {"name": "test_s1_x.c"}]
    assert same_modules(stored, [{"name": "test_s5_filters.z"}]) == [{"name": "test_s5_filters.a"}]
