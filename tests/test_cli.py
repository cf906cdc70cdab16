"""The CLI: every command's bad input gets one clear line, exit status 2 and starts
nothing; listing, comparing and the run's exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "corpus"


# The installed command, run from outside the checkout as a person would (`python -m`
# from the checkout put it on sys.path and hid that the default suites did not import).
SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))


def sessionlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SESSIONLAB, *args], capture_output=True, text=True, timeout=timeout, cwd="/")


TOPOLOGIES = CORPUS / "topologies"
POLICIES = CORPUS / "policies"

BAD_INPUT = [
    (["run", "nosuch"], "unknown suite or case nosuch"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["run", "--results"], "'--results' requires an argument"),
    (["run", "-k", "idle and ("], "malformed -k expression 'idle and ('"),
    (["run", "-k", "idle or or"], "malformed -k expression"),
    (["run", "--junitxml", "/nonexistent/out.xml", "s1"], "--junitxml /nonexistent/out.xml: no folder"),
    (["run", "--frobnicate"], "No such option '--frobnicate'"),
    (["run", "s1", "-n", "2", "--host", "vm1"], "-n and --host: choose one"),
    (["run", "s1", "--host", "vm1:port"], "expected [user@]host[:port]"),
    (["list", "s9"], "unknown suite s9"),
    (["policy", "/nonexistent.toml"], "cannot read"),
    (["policy", str(POLICIES / "latin1.toml")], "not UTF-8 text"),
    (["policy", str(POLICIES / "not_toml.toml")], "not valid TOML"),
    (["policy", str(POLICIES / "bad_values.toml")], "unknown key 'whatever'"),
    (["policy", str(POLICIES / "bad_timeout_rule.toml")], "70000"),
    (["topo", "nosuch"], "unknown topology 'nosuch'"),
    (["topo", "s1", "--param", "colour"], "expected key=value"),
    (["topo", "s1", "--param", "colour=red"], "bad parameters"),
    (["topo", "s1", "--mode", "sync"], "has no controller: --mode does not apply"),
    (["topo", "s2", "--mode", "nosuch"], "unknown mode 'nosuch' for topology 's2' (modes: independent"),
    (
        ["topo", "s4-sdn", "--mode", "nosuch"],
        "unknown mode 'nosuch' for topology 's4-sdn' (modes: round-robin",
    ),
    (["topo", "s1", "--policy", str(POLICIES / "latin1.toml")], "not UTF-8 text"),
    (["topo", str(TOPOLOGIES / "bad_names.py")], "node 'Client1': names are lower-case"),
    (["topo", str(TOPOLOGIES / "bad_names.py")], "switch 'switchnum1': its interface names would be 21"),
    (["topo", str(TOPOLOGIES / "same_dpid.py")], "have the same dpid"),
    (["topo", str(TOPOLOGIES / "no_topos.py")], "has no `topos` dict"),
    (["topo", str(TOPOLOGIES / "syntax_error.py")], "not valid Python (line 3"),
    (["topo", str(TOPOLOGIES / "two_topos.py")], "defines one, other: name one"),
    (["topo", f"{TOPOLOGIES / 'two_topos.py'}:third"], "no topology 'third'"),
    (["topo", "/nonexistent/topo.py"], "no such file"),
    (["report"], "give --compare RUN_A RUN_B"),
    (["report", "--compare", "a"], "'--compare' requires 2 arguments"),
    (["report", "--compare", "/tmp", "/tmp"], "no summary.json"),
    (["report", "--compare", "/tmp", "/tmp", "--tolerance", "x"], "is not a valid float"),
    # issue 23: targets match exactly, an empty -k, the results folder, --pause-on-fail, clean --runs
    (["run", "e"], "unknown suite or case e (suites: s1"),
    (["run", "]"], "unknown suite or case ] (suites: s1"),
    (["run", "keepalive"], "unknown suite or case keepalive"),
    (
        ["run", "test_distribution"],
        "case test_distribution is in 2 modules: name one of testcases/test_s4_l4.py::test_distribution, "
        "testcases/test_s4_l4_sdn.py::test_distribution",
    ),
    (["run", "test_distribution[weighted]"], "is in 2 modules: name one of testcases/test_s4_l4.py::"),
    (["run", "testcases/test_s1_keepalive.py::nosuch"], "no case 'nosuch' in testcases/test_s1_keepalive.py"),
    (["run", "testcases/nosuch.py::test_x"], "no such file testcases/nosuch.py"),
    (["run", "s1", "-k", ""], "-k '': an empty expression selects every case"),
    (["run", "s1", "-k", " "], "-k '': an empty expression selects every case"),
    (["run", "--results", str(POLICIES / "latin1.toml"), "s1"], "latin1.toml: not a folder"),
    (
        ["run", "--results", f"{POLICIES / 'latin1.toml'}/sub", "s1"],
        "cannot make the folder (Not a directory)",
    ),
    (["run", "s1", "--junitxml", "/tmp"], "--junitxml /tmp: a folder; name the file to write"),
    (["run", "s1", "--pause-on-fail", "-n", "2"], "--pause-on-fail needs this terminal: "),
    (["run", "s1", "--pause-on-fail", "--host", "vm1"], "--pause-on-fail needs this terminal: "),
    (["run", "s1", "--pause-on-fail"], "--pause-on-fail needs this terminal: stdin is not a terminal"),
    (["remote", "vm1", "run", "s1", "--pause-on-fail"], "--pause-on-fail needs this terminal"),
    # issue 26: repeated runs
    (["run", "s1", "--repeat", "0"], "Invalid value for '--repeat': 0 is not in the range 1<=x<=100"),
    (["run", "s1", "--until-fail", "--repeat", "1"], "--until-fail --repeat 1: one repetition"),
    (
        ["run", "s1", "--repeat", "3", "--host", "vm1"],
        "--repeat/--until-fail and --host: repetitions run here",
    ),
    (["clean", "--keep", "3"], "--keep, --failed and --results go with --runs"),
    (["clean", "--runs", "--keep", "0"], "0 is not in the range x>=1"),
    (["clean", "--runs", "--results", str(POLICIES / "latin1.toml")], "latin1.toml: not a folder"),
    (["topo", "s1", "--results", str(POLICIES / "latin1.toml")], "latin1.toml: not a folder"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_is_one_line(args, says):
    result = sessionlab(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_run_collects_every_default_suite_before_anything_starts(tmp_path):
    """Every suite imports from the installed command (a case name nothing has: all are
    collected, none runs, no lab is built)."""
    result = sessionlab("run", "-k", "no_case_is_called_this", "--results", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == "sessionlab: no case matches 'no_case_is_called_this'"


def test_a_suite_that_cannot_be_imported_is_named(tmp_path):
    result = sessionlab("run", str(CORPUS / "suites" / "import_error.py"), "--results", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "import_error.py: cannot be collected" in lines[0], result.stderr
    assert "No module named 'no_such_module_anywhere'" in lines[0] and "Traceback" not in lines[0]
    (errors,) = tmp_path.glob("*/collection-errors.txt")
    assert "no_such_module_anywhere" in errors.read_text()


def test_no_command_shows_help():
    result = sessionlab()
    assert result.returncode == 2 and "Commands:" in result.stderr and "doctor" in result.stderr


def test_policy_check_prints_ruleset(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("tcp_timeout = 5\n[[timeouts]]\nport = 22\ntimeout = 3600\n")
    result = sessionlab("policy", str(path))
    assert result.returncode == 0
    assert "policy = { established : 3600 }" in result.stdout


def test_invalid_policy_lists_every_problem():
    result = sessionlab("policy", str(POLICIES / "bad_values.toml"))
    assert result.returncode == 2
    assert "unknown key 'whatever'" in result.stderr and "tcp_timeout: -1" in result.stderr


def test_each_scenario_suite_lists_all_its_modules():
    from lab.catalog import SUITES_DIR, suites

    found = suites()
    assert {"s1", "s2", "s3", "s4", "s5", "s6"} <= set(found)
    # one rule for every scenario: test_<suite>.py and test_<suite>_*.py, however many modules
    for suite, modules in found.items():
        assert modules == sorted(
            {*SUITES_DIR.glob(f"test_{suite}_*.py"), *SUITES_DIR.glob(f"test_{suite}.py")}
        )
    assert [p.stem for p in found["s4"]] == [
        "test_s4_ipv6",
        "test_s4_l4",
        "test_s4_l4_sdn",
        "test_s4_l7",
        "test_s4_redundant",
        "test_s4_scale",
    ]


def test_list_shows_every_case_with_its_description():
    from lab.catalog import collect

    cases = collect()
    result = sessionlab("list")
    assert result.returncode == 0
    assert f"{len(cases)} cases in 6 suites" in result.stdout
    s5 = [c for c in cases if c.suite == "s5"]
    assert s5 and all(c.description and c.description != c.name for c in s5)
    assert "Session log from conntrack" in result.stdout


def test_a_module_belongs_to_its_scenario_by_its_name_alone():
    from lab.catalog import suite_of

    for module in ("test_s1_idle_timeout", "test_s1_wan", "test_s1"):
        assert suite_of(module) == "s1"
    assert suite_of("test_s4_l4_sdn") == "s4" and suite_of("test_s12_x") == "s12"
    for module in ("test_links", "test_cli_lab", "test_lab_harness", "test_s1x", "conftest"):
        assert suite_of(module) == "harness"


def test_targets_resolve_to_suites_modules_and_cases():
    from lab.catalog import ROOT, resolve, suites

    s5 = [str(p) for p in suites()["s5"]]
    assert resolve(["s5"]) == s5
    assert resolve(["test_s4_l7"]) == [str(ROOT / "testcases/test_s4_l7.py")]
    (one,) = resolve(["test_session_log"])
    module, _, name = one.partition("::")
    assert module in s5 and name == "test_session_log"
    # a parametrized case by name: every variant
    assert len(resolve(["test_table_exhaustion"])) == 5


def test_topologies_name_their_controller_modes():
    result = sessionlab("topologies")
    assert result.returncode == 0
    assert "s2\ttopologies/s2_redundant_firewalls.py\tcontroller modes: independent" in result.stdout


def test_progress_shows_case_ids_and_messages_as_they_are():
    """A parametrized id in lower case (`[early drop]`) and a message with brackets are
    printed whole (rich markup swallowed the one and could crash on the other)."""
    import io

    from rich.console import Console

    from lab.progress import Outcome, RunProgress

    out = io.StringIO()
    progress = RunProgress(Console(file=out, markup=False, width=200))
    progress.total = 2
    for outcome in (
        Outcome("t.py::test_x[early drop]", "s5", "passed", 0.0, label="t.py::test_x[early drop]"),
        Outcome("t.py::test_y", "s5", "failed", 0.0, "assert [/tmp/x.cfg:15] == []", "t.py::test_y"),
    ):
        progress.outcomes.append(outcome)
        progress._line(outcome)
    progress.outcomes[1].seconds = 2
    Console(file=out, markup=False, width=200).print(progress.summary())
    text = out.getvalue()
    assert "test_x[early drop]" in text and "assert [/tmp/x.cfg:15] == []" in text
    assert "failed" in text and "s5" in text


def test_a_case_whose_worker_died_stays_failed_when_run_again():
    """pytest-xdist reports a case whose worker died as failed (phase "???"), then runs it
    again on the replacement: the line names the crash, and the verdict stays failed (as
    pytest's exit status) with the second run's outcome beside it."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from lab.progress import RunProgress

    out = io.StringIO()
    progress = RunProgress(Console(file=out, markup=False, width=300))
    progress.total = 1
    nodeid = "testcases/test_links.py::test_loss"
    crash = f"worker 'gw1' crashed while running {nodeid!r}"
    reports = (("???", "failed", crash), ("setup", "passed", None), ("call", "passed", None))
    for when, outcome, longrepr in reports:
        progress.pytest_runtest_logreport(
            SimpleNamespace(
                nodeid=nodeid, when=when, duration=1.0, longrepr=longrepr, location=("", 0, ""),
                passed=outcome == "passed", failed=outcome == "failed", skipped=False,
            )
        )  # fmt: skip
    [case] = progress.outcomes
    assert case.verdict == "failed"
    assert case.reason == crash + "; passed when run again on its replacement"
    assert crash in out.getvalue()


def test_the_report_keeps_a_crash_as_the_verdict(tmp_path):
    """The same for the report: the case.json the replacement wrote says passed; the run's
    report says failed, naming the crash."""
    from lab.pytest_plugin import mark_crashed
    from lab.results import Case

    nodeid = "testcases/test_links.py::test_loss[one way]"
    crash = f"worker 'gw1' crashed while running {nodeid!r}"
    case = Case(name="test_links.test_loss_one_way", path=tmp_path, title="t", verdict="passed")
    other = Case(name="test_links.test_other", path=tmp_path, title="t", verdict="passed")
    mark_crashed([case, other], {nodeid: crash})
    assert (case.verdict, case.message) == ("failed", crash + "; passed when run again on its replacement")
    assert other.verdict == "passed"
