"""`sessionlab report --compare A B`: verdicts that changed, figures that moved beyond the
tolerance, and cases paired across a scenario module split between the two runs."""

import json
import subprocess
import sys
from pathlib import Path

from lab.compare import compare, moved, pair_cases

SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))

# (case, verdict, figures) of two runs
RUN_A = [
    ("m.case1", "passed", {"rate": 100, "outcome": {"8080": "delivered"}, "config": "[/a/lb1.cfg:15]"}),
    ("m.case2", "passed", {"rate": 50}),
    ("m.gone", "passed", {}),
]
RUN_B = [
    ("m.case1", "passed", {"rate": 105, "outcome": {"8080": "hung"}, "config": "[/b/lb1.cfg:15]"}),
    ("m.case2", "failed", {"rate": 80}),
    ("m.new", "passed", {}),
]


def _run_folder(path: Path, rows: list[tuple[str, str, dict]]) -> Path:
    path.mkdir()
    cases = [{"name": name, "verdict": verdict, "figures": figures} for name, verdict, figures in rows]
    (path / "summary.json").write_text(json.dumps(cases))
    return path


def test_report_compare_lists_verdicts_and_moved_figures(tmp_path):
    a = _run_folder(tmp_path / "20261129-010000", RUN_A)
    b = _run_folder(tmp_path / "20261129-020000", RUN_B)
    changes = {(c.case, c.what): c for c in compare(a, b, 0.1)}
    assert ("m.case1", "rate") not in changes  # 5 % apart: within 10 %
    assert changes[("m.case1", "outcome / 8080")].kind == "changed"
    assert changes[("m.case2", "verdict")].b == "failed"
    assert changes[("m.case2", "rate")].kind == "moved"
    assert changes[("m.gone", "verdict")].kind == "only in A"
    assert changes[("m.new", "verdict")].kind == "only in B"
    assert ("m.case1", "rate") in {(c.case, c.what) for c in compare(a, b, 0.01)}
    # by run name under --results, exit 1 as a verdict changed
    report = [SESSIONLAB, "report", "--compare"]
    result = subprocess.run(
        [*report, a.name, b.name, "--results", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert "m.case2" in result.stdout and "failed" in result.stdout and "hung" in result.stdout
    # values are shown as they are, never read as rich markup (a path in brackets crashed it)
    assert "[/a/lb1.cfg:15]" in result.stdout and "[/b/lb1.cfg:15]" in result.stdout
    same = subprocess.run([*report, str(a), str(a)], capture_output=True, text=True)
    assert same.returncode == 0 and "no change" in same.stdout


def test_compare_reads_lists_by_element_and_text_by_its_words():
    assert moved([1.07, 51.4], [1.1, 51.25], 0.1) is None  # each within 10 %
    assert moved([1.0, 51.4], [2.0, 51.4], 0.1) == "moved"
    assert moved([1.0, 2.0], [1.0], 0.1) == "changed"
    # ports in a captured command vary with the run's port blocks; the words do not
    assert moved("PORT 10,0,1,10,93,193", "PORT 10,0,1,10,39,17", 0.1) is None
    assert moved(["10.0.3.10 -> 10.0.1.10:25001"], ["10.0.3.10 -> 10.0.1.10:11001"], 0.1) is None
    assert moved("delivered", "hung", 0.1) == "changed"
    assert moved("fw1", "fw2", 0.1) is None  # a name's number is not compared either


def test_a_case_whose_module_was_split_pairs_with_its_test_name_in_the_same_scenario():
    before = [
        "test_s1_idle_timeout.test_probe_after_idle_0.5",
        "test_s1_idle_timeout.test_wan_delay",
        "test_s1_idle_timeout.test_twice",
        "test_s1_idle_timeout.test_kept",
        "test_s2_asymmetric_paths.test_wan_delay",
        "test_links.test_delay",
    ]
    after = [
        "test_s1_fixes.test_probe_after_idle_0.5",
        "test_s1_wan.test_wan_delay",
        "test_s1_fixes.test_twice",
        "test_s1_wan.test_twice",  # two modules of one scenario: no telling which is which
        "test_s1_idle_timeout.test_kept",
        "test_s2_split.test_wan_delay",
        "test_link_delays.test_delay",  # not a scenario's module: never paired by test name
    ]
    assert pair_cases(before, after) == {
        "test_s1_idle_timeout.test_probe_after_idle_0.5": "test_s1_fixes.test_probe_after_idle_0.5",
        "test_s1_idle_timeout.test_wan_delay": "test_s1_wan.test_wan_delay",
        "test_s1_idle_timeout.test_kept": "test_s1_idle_timeout.test_kept",
        "test_s2_asymmetric_paths.test_wan_delay": "test_s2_split.test_wan_delay",
    }


def test_a_split_module_compares_its_cases_not_only_in_a_and_only_in_b(tmp_path):
    a = _run_folder(tmp_path / "a", [("test_s3_ftp.test_active", "passed", {"time (s)": 1.0})])
    b = _run_folder(tmp_path / "b", [("test_s3_modes.test_active", "passed", {"time (s)": 2.0})])
    (change,) = compare(a, b, 0.1)
    assert (change.case, change.what, change.kind) == (
        "test_s3_modes.test_active (A: test_s3_ftp)",
        "time (s)",
        "moved",
    )
    same = _run_folder(tmp_path / "c", [("test_s3_modes.test_active", "passed", {"time (s)": 1.0})])
    assert compare(a, same) == []


def test_values_that_differ_by_nature_are_not_compared(tmp_path):
    from lab.compare import differs_by_nature

    assert differs_by_nature(" / RSTs and sequence numbers / idle 3s / seq")
    assert differs_by_nature(" / RSTs / idle 3s / receiver's RCV.NXT")
    assert differs_by_nature(" / session log / 1 / client port")
    assert differs_by_nature(" / announced passive port") and differs_by_nature(" / server PID")
    assert not differs_by_nature(" / sessions per firewall / fw1")
    assert not differs_by_nature(" / failed requests started (s after load start)")
    a = _run_folder(
        tmp_path / "a", [("m.c", "passed", {"log": [{"client port": 14000, "isn": 1, "end": "FIN"}]})]
    )
    b = _run_folder(
        tmp_path / "b", [("m.c", "passed", {"log": [{"client port": 15000, "isn": 9, "end": "FIN"}]})]
    )
    assert compare(a, b) == []


def test_only_a_changed_verdict_exits_1_and_a_run_against_itself_warns(tmp_path):
    a = _run_folder(tmp_path / "a", [("m.c", "passed", {"rate": 10}), ("m.gone", "passed", {})])
    b = _run_folder(tmp_path / "b", [("m.c", "passed", {"rate": 50}), ("m.new", "failed", {})])
    moved_only = subprocess.run(
        [SESSIONLAB, "report", "--compare", str(a), str(b)], capture_output=True, text=True
    )
    assert moved_only.returncode == 0, moved_only.stdout + moved_only.stderr
    assert "moved" in moved_only.stdout and "only in B" in moved_only.stdout
    c = _run_folder(tmp_path / "c", [("m.c", "failed", {"rate": 10})])
    changed = subprocess.run(
        [SESSIONLAB, "report", "--compare", str(a), str(c)], capture_output=True, text=True
    )
    assert changed.returncode == 1 and "verdict" in changed.stdout
    (tmp_path / "link").symlink_to(a)
    same = subprocess.run(
        [SESSIONLAB, "report", "--compare", "a", "link", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert same.returncode == 0 and "same run" in same.stderr and "Traceback" not in same.stderr


def test_tolerance_shows_its_default():
    shown = subprocess.run([SESSIONLAB, "report", "--help"], capture_output=True, text=True)
    assert "[default: 0.1]" in shown.stdout
