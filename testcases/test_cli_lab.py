"""The CLI against real labs: `run` (progress, report, JUnit, exit codes 0/1/130), `topo`
(commands on nodes; every way out removes the lab) and `clean` after a run killed with
SIGKILL (what the lab recorded goes, nothing else)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import topology
from lab.records import RECORDS, Record
from lab.wait import wait_until
from testcases.common import TWO_LABS
from testcases.own_runs import own_records
from testcases.terminal import Output

SESSIONLAB = [str(Path(sys.executable).with_name("sessionlab"))]  # the installed command
PROMPT = "sessionlab> "

MINI_SUITE = textwrap.dedent('''
    """A lab suite of one's own, for the CLI's tests."""
    import time

    LAB_TOPOLOGY = "s1"


    def test_outbound_ping(lab, case):
        """Outbound ping crosses the firewall"""
        out = lab.run("client", ["ping", "-c", "1", "-W", "2", lab.ip("server")], check=False)
        case.figure("outbound ping answered", "1 received" in out)
        assert "1 received" in out, out


    def test_inbound_ping(lab, case):
        """Inbound ping is denied: this case fails on purpose"""
        out = lab.run("server", ["ping", "-c", "1", "-W", "1", lab.ip("client")], check=False)
        case.figure("inbound ping answered", "1 received" in out)
        assert "1 received" in out, "denied by the default policy"


    def test_waits(lab, case):
        """Waits to be interrupted"""
        time.sleep(120)
''')


def _bridges() -> set[str]:
    return set(subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split())


pytestmark = pytest.mark.usefixtures("own_label")  # its runs' labs, the records it reads
_records = own_records  # testcases/own_runs.py


def _remove(tags: set[str]) -> None:
    """After a failed test: remove what its labs left (their records), so nothing stays."""
    for tag in tags:
        path = RECORDS / f"{tag}.json"
        if path.exists():
            record = Record.load(path)
            if record.orphaned():
                record.remove()


def _gone(tags: set[str]) -> None:
    """Nothing of these labs is left: no record, no bridge, no runtime directory."""
    left = {t for t in tags if (RECORDS / f"{t}.json").exists()}  # any label: test_crash_mid_case uses it too
    assert not left, f"records left: {left}"
    assert not [b for b in _bridges() if any(b.startswith(t) for t in tags)], _bridges()
    assert not [t for t in tags if Path(f"/run/sessionlab/{t}").exists()]


def test_run_reports_progress_verdicts_and_exit_codes(tmp_path):
    suite = tmp_path / "test_mini_lab.py"
    suite.write_text(MINI_SUITE)
    results, junit = tmp_path / "results", tmp_path / "junit.xml"
    before = _records()
    out = subprocess.run(
        [*SESSIONLAB, "run", str(suite), "-k", "ping", "--results", str(results), "--junitxml", str(junit)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr  # a case failed
    assert "[  1/2]" in out.stdout and "[  2/2]" in out.stdout, out.stdout
    assert re.search(r"passed +\S*test_mini_lab.py::test_outbound_ping", out.stdout), out.stdout
    assert "denied by the default policy" in out.stdout
    assert "sessionlab run" in out.stdout and "report:" in out.stdout  # the summary table, the report
    run = (results / "latest").resolve()
    page = (run / "report.html").read_text()
    assert "data:image/png;base64," in page  # the topology drawing, embedded
    assert "Outbound ping crosses the firewall" in page and "[failed]" in page
    tests = ElementTree.parse(junit).getroot().iter("testcase")
    verdicts = {t.get("name"): [c.tag for c in t] for t in tests}
    assert verdicts["test_outbound_ping"] == [] and "failure" in verdicts["test_inbound_ping"], verdicts
    one = subprocess.run(
        [*SESSIONLAB, "run", f"{suite}::test_outbound_ping", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stdout + one.stderr
    assert _records() == before


def test_an_interrupted_run_exits_130_and_removes_its_lab(tmp_path):
    suite = tmp_path / "test_mini_lab.py"
    suite.write_text(MINI_SUITE)
    before = _records()
    proc = subprocess.Popen(
        [*SESSIONLAB, "run", str(suite), "-k", "waits", "--results", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        new = wait_until(lambda: _records() - before, 60, "the run's lab to be up")
        # The lab is up when its record exists: wait until its case runs (the controller-less s1 is quick).
        wait_until(lambda: any(Record.load(RECORDS / f"{t}.json").processes for t in new), 30, "lab shells")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.returncode != 130:
            _remove(_records() - before)
    assert proc.returncode == 130, out
    _gone(new)


def _topo(args: list[str], commands: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`topo` with commands on stdin that answer at once (Ctrl-D: "")."""
    return subprocess.run(
        [*SESSIONLAB, "topo", *args, "--results", str(tmp_path)],
        input=commands,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _tag(output: str) -> str:
    line = next(line for line in output.splitlines() if " is up; logs in " in line)
    return line.split("(", 1)[1].split(")", 1)[0]


def test_topo_runs_commands_on_nodes_and_leaves_nothing(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("tcp_timeout = 30\n")
    # Mininet's CLI hands what is typed during a command to the node: the next command is
    # written only once the previous one has answered, as a person would.
    with _at_a_terminal(["s1", "--policy", str(policy)], tmp_path) as (proc, output):
        text = output.until(PROMPT)
        assert proc.stdin is not None
        proc.stdin.write("client ping -c 1 -W 2 server\n")
        proc.stdin.flush()
        text += output.until("packet loss")
        proc.stdin.write("exit\n")
        proc.stdin.close()
        text += output.rest()
    fw = topology.plan("s1").addresses["fw-in"]
    assert proc.returncode == 0, text
    assert "1 packets transmitted, 1 received" in text, text
    assert f"policy {policy} on fw" in text and f"fw [firewall] {fw}/24" in text
    assert "lab s1 removed" in text
    _gone({_tag(text)})


def _start_topo(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    """`topo` as a person at a terminal runs it: commands in, output out, as it comes."""
    return subprocess.Popen(
        [*SESSIONLAB, "topo", *args, "--results", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def _at_a_terminal(args: list[str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """`topo` as at a terminal (`_start_topo`) with its output as it comes; after the
    block, a `topo` still running is killed and what it recorded is removed."""
    before = _records()
    proc = _start_topo(args, tmp_path)
    assert proc.stdout is not None
    output = Output(proc, proc.stdout.fileno())
    try:
        yield proc, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            _remove(_records() - before)


def test_topo_with_a_controller_mode(tmp_path):
    out = _topo(["s2", "--mode", "independent"], "", tmp_path)  # Ctrl-D at once
    assert out.returncode == 0, out.stdout + out.stderr
    assert "controller: controllers.fwlb.app, mode independent" in out.stdout
    _gone({_tag(out.stdout)})


def _interactive(sig: int, tmp_path: Path) -> None:
    text = ""
    with _at_a_terminal(["s1"], tmp_path) as (proc, output):
        text = output.until(PROMPT)  # at the prompt (earlier, Ctrl-C interrupts the build: 130)
        proc.send_signal(sig)
        text += output.rest()
    assert proc.returncode == (0 if sig == signal.SIGINT else 130), text
    _gone({_tag(text)})


def test_topo_ctrl_c_at_the_prompt_leaves_and_removes_the_lab(tmp_path):
    _interactive(signal.SIGINT, tmp_path)


def test_topo_closed_terminal_removes_the_lab(tmp_path):
    _interactive(signal.SIGHUP, tmp_path)


KILLED_LAB = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lab import topology
    from lab.net import Lab

    lab = Lab(topology.load("s1"), Path(sys.argv[1]))
    lab.__enter__()
    proc = lab.start("server", ["sleep", "600"], "sleeper")
    print(lab.tag, proc.pid, flush=True)
    time.sleep(600)
""")


def test_clean_removes_what_a_killed_run_left_and_nothing_else(tmp_path):
    decoy_bridge = f"decoy{secrets.token_hex(2)}"
    decoy = subprocess.Popen(["sleep", "600"])  # not any lab's
    subprocess.run(
        ["ovs-vsctl", "add-br", decoy_bridge, "--", "set", "bridge", decoy_bridge, "datapath_type=netdev"],
        check=True,
    )
    tag = ""
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_LAB, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert killed.stdout is not None
        tag, sleeper = killed.stdout.readline().split()
        killed.kill()  # SIGKILL: no cleanup ran
        killed.wait(10)
        record = Record.load(RECORDS / f"{tag}.json")
        assert record.orphaned()
        left = record.leftovers()
        assert ("bridge", f"{tag}s1") in left and ("process", f"{sleeper} sleeper") in left, left
        dry = subprocess.run([*SESSIONLAB, "clean", "--dry-run"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0 and "would remove" in dry.stdout and f"{tag}s1" in dry.stdout, dry.stdout
        assert f"{tag}s1" in _bridges()
        done = subprocess.run([*SESSIONLAB, "clean"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "removed" in done.stdout, done.stdout + done.stderr
        _gone({tag})
        wait_until(lambda: not os.path.exists(f"/proc/{sleeper}"), 10, "the recorded sleeper to end")
        assert decoy_bridge in _bridges() and decoy.poll() is None, "clean removed what no lab recorded"
        again = subprocess.run([*SESSIONLAB, "clean"], capture_output=True, text=True, timeout=60)
        assert tag not in again.stdout
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
        _remove({tag} - {""})
        decoy.kill()
        decoy.wait()
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", decoy_bridge], check=False)


def test_two_labs_side_by_side_make_one_report(tmp_path):
    """-n 2: two modules, each with its lab on one worker, at once; one report."""
    results = tmp_path / "results"
    before = _records()
    out = subprocess.run(
        [
            *SESSIONLAB,
            "run",
            "-n",
            "2",
            "test_links",
            "s5",
            "-k",
            TWO_LABS,
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(((results / "latest").resolve() / "summary.json").read_text())
    workers: dict[str, set[str]] = {}
    for case in summary:
        assert case["verdict"] == "passed", case
        workers.setdefault(case["name"].split(".")[0], set()).add(case["runner"]["worker"])
    assert set(workers) == {"test_links", "test_s5_filters"}, workers
    assert all(len(w) == 1 for w in workers.values()) and len(set.union(*workers.values())) == 2, workers
    page = ((results / "latest") / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2  # both labs' drawings
    assert _records() == before
