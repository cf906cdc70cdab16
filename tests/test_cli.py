"""The CLI: every command's bad input gets one clear line, exit status 2 and starts
nothing; listing, comparing and the run's exit codes."""

import json
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
    (["topo", "s2", "--mode", "nosuch"], "unknown fabric mode 'nosuch'"),
    (["topo", "s4-sdn", "--mode", "nosuch"], "unknown balancing algorithm 'nosuch'"),
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
    from lab.catalog import suites

    found = suites()
    assert {"s1", "s2", "s3", "s4", "s5"} <= set(found)
    assert [p.stem for p in found["s4"]] == [
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
    assert f"{len(cases)} cases in 5 suites" in result.stdout
    s5 = [c for c in cases if c.suite == "s5"]
    assert s5 and all(c.description and c.description != c.name for c in s5)
    assert "Session log from conntrack" in result.stdout


def test_targets_resolve_to_suites_modules_and_cases():
    from lab.catalog import ROOT, resolve

    assert resolve(["s5"]) == [str(ROOT / "testcases/test_s5_firewall.py")]
    assert resolve(["test_s4_l7"]) == [str(ROOT / "testcases/test_s4_l7.py")]
    one = resolve(["test_session_log"])
    assert one == [str(ROOT / "testcases/test_s5_firewall.py::test_session_log")]
    # a parametrized case by name: every variant
    assert len(resolve(["test_table_exhaustion"])) == 5


def test_topologies_name_their_controller_modes():
    result = sessionlab("topologies")
    assert result.returncode == 0
    assert "s2\ttopologies/s2_redundant_firewalls.py\tcontroller modes: independent" in result.stdout


def _run_folder(path: Path, cases: list[dict]) -> Path:
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(cases))
    return path


def test_report_compare_lists_verdicts_and_moved_figures(tmp_path):
    a = _run_folder(
        tmp_path / "20261129-010000",
        [
            {
                "name": "m.case1",
                "verdict": "passed",
                "figures": {"rate": 100, "outcome": {"8080": "delivered"}, "config": "[/a/lb1.cfg:15]"},
            },
            {"name": "m.case2", "verdict": "passed", "figures": {"rate": 50}},
            {"name": "m.gone", "verdict": "passed", "figures": {}},
        ],
    )
    b = _run_folder(
        tmp_path / "20261129-020000",
        [
            {
                "name": "m.case1",
                "verdict": "passed",
                "figures": {"rate": 105, "outcome": {"8080": "hung"}, "config": "[/b/lb1.cfg:15]"},
            },
            {"name": "m.case2", "verdict": "failed", "figures": {"rate": 80}},
            {"name": "m.new", "verdict": "passed", "figures": {}},
        ],
    )
    from lab.compare import compare

    changes = {(c.case, c.what): c for c in compare(a, b, 0.1)}
    assert ("m.case1", "rate") not in changes  # 5 % apart: within 10 %
    assert changes[("m.case1", "outcome / 8080")].kind == "changed"
    assert changes[("m.case2", "verdict")].b == "failed"
    assert changes[("m.case2", "rate")].kind == "moved"
    assert changes[("m.gone", "verdict")].kind == "only in A"
    assert changes[("m.new", "verdict")].kind == "only in B"
    assert ("m.case1", "rate") in {(c.case, c.what) for c in compare(a, b, 0.01)}
    # by run name under --results, exit 1 as a verdict changed
    result = sessionlab("report", "--compare", a.name, b.name, "--results", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert "m.case2" in result.stdout and "failed" in result.stdout and "hung" in result.stdout
    # values are shown as they are, never read as rich markup (a path in brackets crashed it)
    assert "[/a/lb1.cfg:15]" in result.stdout and "[/b/lb1.cfg:15]" in result.stdout
    same = sessionlab("report", "--compare", str(a), str(a))
    assert same.returncode == 0 and "no change" in same.stdout


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


def test_compare_reads_lists_by_element_and_text_by_its_words():
    from lab.compare import moved

    assert moved([1.07, 51.4], [1.1, 51.25], 0.1) is None  # each within 10 %
    assert moved([1.0, 51.4], [2.0, 51.4], 0.1) == "moved"
    assert moved([1.0, 2.0], [1.0], 0.1) == "changed"
    # ports in a captured command vary with the run's port blocks; the words do not
    assert moved("PORT 10,0,1,10,93,193", "PORT 10,0,1,10,39,17", 0.1) is None
    assert moved(["10.0.3.10 -> 10.0.1.10:25001"], ["10.0.3.10 -> 10.0.1.10:11001"], 0.1) is None
    assert moved("delivered", "hung", 0.1) == "changed"
    assert moved("fw1", "fw2", 0.1) is None  # a name's number is not compared either
