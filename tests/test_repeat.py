"""Repeated runs (`run --repeat N`, `--until-fail`): one run folder with a folder per
repetition, the flake table (each case's verdict and smallest client timeout margin per
repetition) in the report, summary.json and repetitions.json, one JUnit file of all
repetitions, option checks before anything starts, and the series' end on a failure
(--until-fail) or Ctrl-C. No lab network: cases written as the plugin writes them, and a
suite of its own without a lab (tests/corpus/suites/repeat_suite.py)."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lab.results import Case

SUITE = Path(__file__).resolve().parent / "corpus" / "suites" / "repeat_suite.py"
MARGINS = "client timeout margins"


def _case(rep: Path, name: str, verdict: str, margins: list[float] | None = None, message: str = "") -> None:
    """A case folder as the plugin leaves it: case.json with its verdict and, when it noted
    client loads, the figure of their timeout margins."""
    case = Case(name=name, path=rep / name, title=f"the case {name}", verdict=verdict, message=message)
    if margins is not None:
        case.figures[MARGINS] = [
            {"load": f"tcp_sessions on h{n}", "client timeout (s)": 3.0, "margin (s)": round(m, 3)}
            for n, m in enumerate(margins)
        ]
    case.duration = 1.5
    case.save()


def _series(tmp_path: Path) -> Path:
    """A repeated run of three repetitions: a steady case, a flaky one (failed in rep-2), one
    without a client load, one erred every time, and one not run in rep-3 (interrupted)."""
    run = tmp_path / "20261202-120000"
    for n in (1, 2, 3):
        rep = run / f"rep-{n}"
        _case(rep, "test_s9_demo.test_steady", "passed", [2.9, 1.2 + n / 10])
        flaky = "failed" if n == 2 else "passed"
        message = "lab = <Lab>\n\nE   AssertionError: the client hung\nE   assert 1 == 0" if n == 2 else ""
        _case(rep, "test_s9_demo.test_flaky", flaky, [0.9 - n / 10], message)
        _case(rep, "test_s9_demo.test_no_load", "passed")
        _case(rep, "test_s9_demo.test_broken", "error", [], "E   RuntimeError: no fw")
        _case(rep, "test_s9_other.test_late", "not run" if n == 3 else "passed", [1.0])
    (run / "run.json").write_text(json.dumps({"command": "sessionlab run --repeat 3 s9", "started": None}))
    return run


def _read(run: Path, ended: str = ""):
    from lab.series import Repetition, Series

    reps = [Repetition(n, run / f"rep-{n}", "finished") for n in (1, 2, 3)]
    return Series.read(run, 3, False, reps, ended)


def test_the_flake_table_holds_each_case_s_verdict_and_smallest_margin_per_repetition(tmp_path):
    series = _read(_series(tmp_path))
    rows = {r.name: r for r in series.rows}
    assert [r.name for r in series.rows][:2] == ["test_s9_demo.test_broken", "test_s9_demo.test_flaky"]
    flaky = rows["test_s9_demo.test_flaky"]
    assert {n: c.verdict for n, c in flaky.cells.items()} == {1: "passed", 2: "failed", 3: "passed"}
    assert [flaky.cells[n].margin for n in (1, 2, 3)] == [0.8, 0.7, 0.6]  # the smallest of its loads
    assert flaky.flaky and flaky.verdict == "failed" and flaky.margin == 0.6
    steady = rows["test_s9_demo.test_steady"]
    assert [steady.cells[n].margin for n in (1, 2, 3)] == [1.3, 1.4, 1.5] and not steady.flaky
    assert steady.verdict == "passed"
    assert rows["test_s9_demo.test_no_load"].margin is None
    # the same verdict every time is no flake, an error either; a repetition that ended
    # before a case ended ("not run") does not count
    assert not rows["test_s9_demo.test_broken"].flaky and rows["test_s9_demo.test_broken"].verdict == "error"
    assert rows["test_s9_demo.test_broken"].cells[1].margin is None  # no load completed
    late = rows["test_s9_other.test_late"]
    assert late.cells[3].verdict == "not run" and not late.flaky and late.verdict == "passed"
    assert [r.name for r in series.flaky] == ["test_s9_demo.test_flaky"]
    assert series.failed_repetitions() == [1, 2, 3]
    assert series.line().startswith("3 repetitions, 1 case flaky (of 5); failed in repetitions 1, 2, 3")


def test_the_terminal_shows_the_flake_table(tmp_path):
    """Up to 8 repetitions a column each (verdict and margin); beyond, a letter per repetition;
    of a whole suite's cases, the flaky and failed ones only."""
    import io

    from rich.console import Console

    from lab.progress import series_table
    from lab.series import Repetition, Series

    def shown(series: Series) -> str:
        out = io.StringIO()
        Console(file=out, width=200, markup=False).print(series_table(series))
        return out.getvalue()

    series = _read(_series(tmp_path))
    text = shown(series)
    assert "3 repetitions, 1 case flaky (of 5)" in text and "rep-3" in text
    line = next(x for x in text.splitlines() if "test_s9_demo.test_flaky" in x)
    assert "passed 0.80" in line and "failed 0.70" in line and "flaky" in line.split("0.60")[-1]
    run = tmp_path / "20261202-120000"
    for n in range(4, 10):
        _case(run / f"rep-{n}", "test_s9_demo.test_flaky", "passed", [1.0])
    many = Series.read(run, 9, False, [Repetition(n, run / f"rep-{n}") for n in range(1, 10)])
    line = next(x for x in shown(many).splitlines() if "test_s9_demo.test_flaky" in x)
    assert "PFPPPPPPP" in line
    for n in range(30):
        _case(run / "rep-1", f"test_s9_more.test_{n}", "passed")
    text = shown(Series.read(run, 3, False, [Repetition(n, run / f"rep-{n}") for n in (1, 2, 3)]))
    assert "test_s9_more" not in text and "33 more cases, neither flaky nor failed" in text
    assert "test_s9_demo.test_flaky" in text and "test_s9_demo.test_broken" in text


def test_the_series_report_summary_and_repetitions_json(tmp_path):
    from lab.report import write_report, write_series_report

    run = _series(tmp_path)
    # each repetition's own report, as the plugin writes it; `latest` is not moved by it
    for n in (1, 2, 3):
        rep = run / f"rep-{n}"
        write_report(rep, [Case.load(p.parent) for p in sorted(rep.glob("*/case.json"))])
    assert not (tmp_path / "latest").exists() and not (run / "latest").exists()
    assert "<a href='../report.html'>the series' report</a>" in (run / "rep-2" / "report.html").read_text()
    assert "Run <code>20261202-120000/rep-2</code>" in (run / "rep-2" / "report.html").read_text()

    text = write_series_report(_read(run, "stopped: left the prompt")).read_text()
    assert (tmp_path / "latest").resolve() == run.resolve()
    assert (
        "<b>3 repetitions, 1 case flaky (of 5); failed in repetitions 1, 2, 3; stopped: left the prompt</b>"
        in (text)
    )
    assert "<a href='rep-2/report.html'>report</a>" in text and "<a href='rep-2/junit.xml'>" not in text
    assert "<tr class='flaky'><td>test_s9_demo</td><td>the case test_s9_demo.test_flaky</td>" in text
    link = "href='rep-2/report.html#test_s9_demo.test_flaky'"
    cell = (
        f"<td class='cell failed'><a class='failed' {link}>failed</a><br><span class='margin'>0.70 s</span>"
    )
    assert cell in text
    assert "<td class='reason'>rep-2: the client hung</td>" in text  # the traceback's error line
    assert "<tr class='steady'><td>test_s9_demo</td><td>the case test_s9_demo.test_steady</td>" in text
    assert text.count("<span class=flaky>flaky</span>") == 1

    summary = {c["name"]: c for c in json.loads((run / "summary.json").read_text())}
    flaky = summary["test_s9_demo.test_flaky"]
    assert flaky["verdict"] == "failed" and flaky["flaky"] and flaky["smallest margin (s)"] == 0.6
    assert flaky["failed in"] == [2] and "the client hung" in flaky["message"]
    assert [
        (r["repetition"], r["verdict"], r["smallest margin (s)"], r["path"]) for r in flaky["repetitions"]
    ] == [
        (1, "passed", 0.8, "rep-1/test_s9_demo.test_flaky"),
        (2, "failed", 0.7, "rep-2/test_s9_demo.test_flaky"),
        (3, "passed", 0.6, "rep-3/test_s9_demo.test_flaky"),
    ]
    data = json.loads((run / "repetitions.json").read_text())
    assert data["repetitions"] == 3 and data["flaky"] == ["test_s9_demo.test_flaky"]
    assert data["each"][1]["verdicts"] == {"error": 1, "failed": 1, "passed": 3}
    assert data["cases"]["test_s9_demo.test_flaky"]["2"] == ["failed", 0.7]

    # read back (`report RUN`) as written
    from lab.series import read_series

    again = read_series(run)
    assert again is not None and again.line() == _read(run, "stopped: left the prompt").line()


def test_a_repeated_run_is_one_run_to_pruning_and_its_failures_keep_it(tmp_path):
    """Killed before its report, a repeated run's verdicts are its repetitions' cases; it
    counts as one run (its rep-* folders are not runs) and a failure in it keeps it."""
    from lab.results import failed, prune, ran_a_case, run_folders, verdicts

    run = tmp_path / "20260101-000000"
    _case(run / "rep-1", "test_s9_demo.test_a", "passed")
    _case(run / "rep-2", "test_s9_demo.test_a", "failed")
    (run / "run.json").write_text("{}")
    assert sorted(verdicts(run)) == ["failed", "passed"] and ran_a_case(run) and failed(run)
    passing = tmp_path / "20260101-000001"
    _case(passing / "rep-1", "test_s9_demo.test_a", "passed")
    (passing / "run.json").write_text("{}")
    for n in range(2):
        (tmp_path / f"20260102-00000{n}").mkdir()
        (tmp_path / f"20260102-00000{n}" / "run.json").write_text("{}")
    assert run_folders(tmp_path) == sorted(tmp_path.iterdir())
    assert prune(tmp_path, keep=2) == [passing]  # the failed series stays
    assert (run / "rep-1").exists() and (run / "rep-2").exists()


def test_junit_of_all_repetitions_is_one_file_with_a_suite_per_repetition(tmp_path):
    from lab.series import merge_junit

    parts = []
    for n, failures in ((1, 0), (2, 1)):
        path = tmp_path / f"rep-{n}.xml"
        case = "<testcase classname='testcases.test_s9' name='test_a'/>"
        if failures:
            case = "<testcase classname='testcases.test_s9' name='test_a'><failure message='x'/></testcase>"
        path.write_text(
            f"<?xml version='1.0'?><testsuites><testsuite name='pytest' tests='1' failures='{failures}'>"
            f"{case}</testsuite></testsuites>"
        )
        parts.append((n, path))
    parts.append((3, tmp_path / "none.xml"))  # a repetition killed before writing its file
    root = ET.parse(merge_junit(parts, tmp_path / "all.xml")).getroot()
    suites = root.findall("testsuite")
    assert [(s.get("name"), s.get("failures")) for s in suites] == [("rep-1", "0"), ("rep-2", "1")]
    assert [c.get("name") for s in suites for c in s.iter("testcase")] == ["test_a", "test_a"]


def test_compare_reads_a_repeated_run_by_its_worst_verdicts(tmp_path):
    from lab.compare import compare
    from lab.report import write_series_report

    run = _series(tmp_path)
    write_series_report(_read(run))
    plain = tmp_path / "20261202-110000"
    plain.mkdir()
    (plain / "summary.json").write_text(
        json.dumps(
            [
                {
                    "name": "test_s9_demo.test_flaky",
                    "verdict": "passed",
                    "figures": {MARGINS: [{"margin (s)": 2}]},
                },
                {"name": "test_s9_demo.test_steady", "verdict": "passed", "figures": {"rate": 1}},
            ]
        )
    )
    changes = compare(plain, run)
    assert [(c.case, c.kind, c.a, c.b) for c in changes if c.kind == "verdict"] == [
        ("test_s9_demo.test_flaky", "verdict", "passed", "failed")
    ]
    assert not [c for c in changes if "figure" in c.kind or c.kind == "moved"]


def _invoke(*args: str):
    from lab.cli import app

    return CliRunner().invoke(app, list(args), obj={"argv": list(args)}, standalone_mode=False)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--repeat", "0"], "Invalid value for '--repeat': 0 is not in the range 1<=x<=100"),
        (["--repeat", "101"], "101 is not in the range 1<=x<=100"),
        (["--repeat", "two"], "'two' is not a valid integer"),
        (
            ["--until-fail", "--repeat", "1"],
            "--until-fail --repeat 1: one repetition; give --repeat 2 or more",
        ),
        (["--repeat", "2", "--host", "vm1"], "--repeat/--until-fail and --host: repetitions run here"),
        (["--until-fail", "--host", "vm1"], "--repeat/--until-fail and --host"),
        (["--until-fail", "--pause-on-fail", "-n", "2"], "--pause-on-fail needs this terminal"),
    ],
)
def test_repeat_options_are_checked_before_anything_starts(tmp_path, args, says):
    from lab.errors import ConfigError

    result = _invoke("run", "s1", "--results", str(tmp_path / "results"), *args)
    error = result.exception
    assert isinstance(error, (click.UsageError, ConfigError)), result.output
    message = error.format_message() if isinstance(error, click.UsageError) else str(error)
    assert says in message and "\n" not in message
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_help_states_the_cap_and_the_junit_file():
    text = " ".join(_invoke("run", "--help").output.split())
    assert "at most --repeat N times (default 10)" in text
    assert "one file with a <testsuite> per repetition (named rep-<i>)" in text


def _sessionlab(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`sessionlab` with the lab check off: the suite builds no lab (as root or not)."""
    script = "import sys, lab.preflight; lab.preflight.check_host = lambda: None; from lab.cli import main; "
    script += "sys.exit(main(sys.argv[1:]))"
    counter = tmp_path / "counter"
    counter.write_text("0")
    environ = {**os.environ, "REPEAT_COUNTER": str(counter), **env}
    return subprocess.run(
        [sys.executable, "-c", script, *args, "--results", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env=environ,
        stdin=subprocess.DEVNULL,
    )


def test_a_repeated_run_keeps_every_repetition_in_one_run_folder(tmp_path):
    junit = tmp_path / "all.xml"
    result = _sessionlab(
        tmp_path, "run", "--repeat", "3", str(SUITE), "--junitxml", str(junit), REPEAT_FAIL_AT="2"
    )
    assert result.returncode == 1, result.stdout + result.stderr  # a repetition failed
    (run,) = [p for p in (tmp_path / "results").iterdir() if not p.is_symlink()]
    assert (tmp_path / "results" / "latest").resolve() == run
    for n in (1, 2, 3):
        rep = run / f"rep-{n}"
        assert {p.name for p in rep.iterdir()} >= {"report.html", "summary.json", "junit.xml", "run.json"}
        assert json.loads((rep / "run.json").read_text())["repetition"] == n
        assert len(list(rep.glob("*/case.json"))) == 3
    assert {p.name for p in run.iterdir()} >= {"report.html", "summary.json", "repetitions.json", "run.json"}
    # each repetition imported the suite afresh: its module state did not carry over
    summary = {c["name"]: c for c in json.loads((run / "summary.json").read_text())}
    assert summary["repeat_suite.test_steady"]["verdict"] == "passed"
    assert [r["verdict"] for r in summary["repeat_suite.test_sometimes"]["repetitions"]] == [
        "passed",
        "failed",
        "passed",
    ]
    assert [r["smallest margin (s)"] for r in summary["repeat_suite.test_sometimes"]["repetitions"]] == [
        0.6,
        0.7,
        0.8,
    ]
    assert "3 repetitions, 1 case flaky (of 3); failed in repetition 2" in result.stdout
    assert "report: " + str(run / "report.html") in result.stdout
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("failures")) for s in suites] == [
        ("rep-1", "0"),
        ("rep-2", "1"),
        ("rep-3", "0"),
    ]
    # `report RUN`: the series in a line and the flaky case's verdicts; a repetition by name
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("sessionlab")), "report", str(run)],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 1
    assert (
        "flaky: repeat_suite.test_sometimes: 1:passed 2:failed 3:passed; rep-2: failed in repetition 2"
        in (shown.stdout)
    )
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("sessionlab")), "report", str(run / "rep-3")],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and f"run {run.name}/rep-3: 3 passed" in shown.stdout


def test_until_fail_stops_at_the_first_failed_repetition(tmp_path):
    result = _sessionlab(tmp_path, "run", "--until-fail", "--repeat", "5", str(SUITE), REPEAT_FAIL_AT="2")
    assert result.returncode == 1, result.stdout + result.stderr
    (run,) = [p for p in (tmp_path / "results").iterdir() if not p.is_symlink()]
    assert sorted(p.name for p in run.glob("rep-*")) == ["rep-1", "rep-2"]
    data = json.loads((run / "repetitions.json").read_text())
    assert data["stopped"] == "stopped after repetition 2: a case failed (--until-fail)"
    assert data["at most"] == 5 and data["until fail"] is True
    # no failure: every repetition up to the cap, exit 0; each repetition with its -n workers
    result = _sessionlab(tmp_path, "run", "--until-fail", "--repeat", "2", "-n", "2", str(SUITE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 repetitions, 0 cases flaky (of 3)" in result.stdout
    run = (tmp_path / "results" / "latest").resolve()
    for rep in ("rep-1", "rep-2"):
        cases = json.loads((run / rep / "summary.json").read_text())
        assert len(cases) == 3 and all(c["runner"]["worker"].startswith("gw") for c in cases)


def test_ctrl_c_ends_the_series_with_the_report_of_the_repetitions_so_far(tmp_path):
    result = _sessionlab(tmp_path, "run", "--repeat", "3", str(SUITE), REPEAT_INTERRUPT_AT="2")
    assert result.returncode == 130, result.stdout + result.stderr
    assert result.stderr.strip() == "sessionlab: interrupted"
    (run,) = [p for p in (tmp_path / "results").iterdir() if not p.is_symlink()]
    assert sorted(p.name for p in run.glob("rep-*")) == ["rep-1", "rep-2"]
    data = json.loads((run / "repetitions.json").read_text())
    assert data["stopped"] == "interrupted in repetition 2"
    assert [e["ended"] for e in data["each"]] == ["finished", "interrupted"]
    assert data["cases"]["repeat_suite.test_sometimes"]["2"][0] == "not run"
    assert "2" not in data["cases"]["repeat_suite.test_no_load"]  # never started in rep-2


def test_a_repetition_stopped_early_ends_the_series(tmp_path):
    """Leaving --pause-on-fail's prompt stops pytest's session (`shouldfail`): the series
    ends there too, as the prompt's banner says the run does."""
    result = _sessionlab(tmp_path, "run", "--repeat", "3", str(SUITE), REPEAT_STOP_AT="1")
    assert result.returncode == 1, result.stdout + result.stderr
    run = (tmp_path / "results" / "latest").resolve()
    assert sorted(p.name for p in run.glob("rep-*")) == ["rep-1"]
    data = json.loads((run / "repetitions.json").read_text())
    assert data["stopped"] == "stopped: left the prompt (as --pause-on-fail's prompt does)"
