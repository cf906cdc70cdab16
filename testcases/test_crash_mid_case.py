"""A crash in the middle of a case (issue 26, point 3): a process the lab or a case started,
killed with SIGKILL under load, ends its case within a bounded time with a message naming
the process, its exit and the last lines of its log; the next case starts on a clean lab
(a new one when the dead process was the lab's: the controller), and nothing is left.

Each kind is killed in a small suite of its lab, run by pytest itself in a subprocess
(the plugin as any suite meets it), whose summary.json is the evidence: S2 for the
controller, conntrackd, the sync-defer agent and an echo server; S4 for haproxy, nginx
and keepalived; S3 for vsftpd. Each suite ends with a case that must pass. Afterwards
none of the inner labs' records, bridges or runtime folders is left, and no process of
a killed one's process group (nginx's worker, keepalived's VRRP child, vsftpd's session).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lab.deaths import group_members
from lab.results import Case
from testcases.test_cli_lab import _gone

ROOT = Path(__file__).resolve().parents[1]

S2_SUITE = '''
"""Crash mid-case, S2: each case kills one process with SIGKILL under a session load."""
import time

from lab.events import read_records
from lab.traffic import SessionLoad, finish_sessions, run_sessions, start_echo_server, start_sessions
from testcases.s2_common import MODES, SERVER_HOSTS, SERVICE, prepare, servers_of

LAB_TOPOLOGY = "s2"


def under_load(lab, case, mode, victim):
    """Sessions h1 -> the echo servers at 40/s; after 20, SIGKILL `victim(lab, echoes)`;
    then the load's end is awaited and every session must have passed."""
    prepare(lab, MODES[mode])
    echoes = {s: start_echo_server(lab, s, [SERVICE], f"echo-{s}") for s in SERVER_HOSTS}
    load = SessionLoad(servers_of(lab), 160, rate=40, timeout=3.0, first_port=case.ports.start)
    client = start_sessions(lab, "h1", load, "sessions-h1")
    lab.wait(lambda: len(read_records(client.output())) >= 20, 15, "20 sessions before the kill")
    proc = victim(lab, echoes)
    case.figure("lab", lab.tag)
    case.figure("victim", {"name": proc.name, "pid": proc.pid})
    killed_at = time.time()
    proc.popen.kill()
    case.figure("killed at", killed_at)
    records = finish_sessions(lab, client, load)
    failed = [r for r in records if not r.get("data_ok")]
    assert not failed, f"{len(failed)} of {len(records)} sessions failed"


def test_controller(lab, case):
    under_load(lab, case, "symmetric", lambda lab, echoes: lab.controller_proc)


def test_next_after_the_controller(lab, case):
    healthy(lab, case)


def test_conntrackd(lab, case):
    under_load(lab, case, "sync", lambda lab, echoes: lab.node("fw1").syncd)


def test_agent(lab, case):
    under_load(lab, case, "sync-defer", lambda lab, echoes: lab.node("fw1").deferral.proc)


def test_echo_server(lab, case):
    under_load(lab, case, "symmetric", lambda lab, echoes: echoes["srv1"])


def healthy(lab, case):
    case.figure("lab", lab.tag)
    prepare(lab, MODES["symmetric"])
    for s in SERVER_HOSTS:
        start_echo_server(lab, s, [SERVICE], f"echo-{s}")
    records = run_sessions(lab, "h1", servers_of(lab), 20, timeout=3.0, first_port=case.ports.start)
    assert all(r.get("data_ok") for r in records), records


def test_next(lab, case):
    healthy(lab, case)
'''

S4_SUITE = '''
"""Crash mid-case, S4: haproxy, nginx, keepalived killed with SIGKILL under an HTTP load."""
import time

from lab.config import Adc, Pool, RealServer, VrrpInstance
from lab.events import read_json_lines
from lab.traffic import HttpLoad, finish_http, run_http, start_http
from testcases.s4_common import SERVERS, VIP, start_servers

LAB_TOPOLOGY = "s4"
POOL = Pool("web", tuple(RealServer(SERVERS[s], 80) for s in ("r1", "r2")))


def adc(lab, case, daemon, own_vip=True):
    start_servers(lab, ("r1", "r2"))
    return lab.node("lb1").start_adc(Adc(VIP, 80, (POOL,)), daemon, case.ports[250:], own_vip=own_vip)


def under_load(lab, case, victim):
    """HTTP requests c1 -> the VIP at 40/s; after 20, SIGKILL `victim`; then the load's
    end is awaited and every request must have been answered."""
    load = HttpLoad(VIP, 160, case.ports.start, rate=40, timeout=2.0)
    client = start_http(lab, "c1", load, "http-c1")
    lab.wait(lambda: sum("i" in r for r in read_json_lines(client.output())) >= 20, 15, "20 requests")
    case.figure("lab", lab.tag)
    case.figure("victim", {"name": victim.name, "pid": victim.pid})
    killed_at = time.time()
    victim.popen.kill()
    case.figure("killed at", killed_at)
    records = finish_http(lab, client, load.budget())
    failed = [r for r in records if not r.get("ok")]
    assert not failed, f"{len(failed)} of {len(records)} requests failed"


def test_haproxy(lab, case):
    under_load(lab, case, adc(lab, case, "haproxy").proc)


def test_nginx(lab, case):
    under_load(lab, case, adc(lab, case, "nginx").proc)


def test_keepalived(lab, case):
    """keepalived holds the VIP haproxy serves on lb1 (alone: master at once)."""
    adc(lab, case, "haproxy", own_vip=False)
    vrrp = lab.node("lb1").start_vrrp([VrrpInstance("lb1-c", 51, 150, f"{VIP}/24", 0.1)])
    lab.wait(lambda: vrrp.state() == "MASTER", 5, "lb1 to become master")
    under_load(lab, case, vrrp.proc)


def test_next(lab, case):
    case.figure("lab", lab.tag)
    adc(lab, case, "haproxy")
    records = run_http(lab, {"c1": HttpLoad(VIP, 20, case.ports.start, timeout=2.0)})["c1"]
    assert all(r.get("ok") for r in records), records
'''

S3_SUITE = '''
"""Crash mid-case, S3: vsftpd killed with SIGKILL while a download holds its data port."""
import time

import pytest

from lab.config import FtpServerConfig
from lab.devices.ftp_server import FtpServer, make_file
from lab.traffic import FtpDownload, finish_ftp, run_ftp, start_ftp
from testcases.s3_common import OPEN

LAB_TOPOLOGY = "s3"


@pytest.fixture
def vsftpd(lab):
    for fw in ("fwc", "fws"):
        lab.node(fw).apply_policy(OPEN)
    root = lab.runtime_dir() / "ftp"
    root.mkdir(mode=0o755, exist_ok=True)
    make_file(root, "file.bin", 64 * 1024)
    return FtpServer(lab, "server", FtpServerConfig(root=str(root), data_timeout=3), "vsftpd").start()


def download(case, hold=0.0):
    return FtpDownload("PASV", "file.bin", case.ports[0], case.ports[1], timeout=3.0, hold=hold)


def test_vsftpd(lab, case, vsftpd):
    held = download(case, hold=2.0)
    client = start_ftp(lab, "client", lab.ip("server"), held, "ftp-client")
    lab.wait(lambda: '"announced"' in client.output(), 10, "the passive port announced")
    case.figure("lab", lab.tag)
    case.figure("victim", {"name": vsftpd.proc.name, "pid": vsftpd.proc.pid})
    killed_at = time.time()
    vsftpd.proc.popen.kill()
    case.figure("killed at", killed_at)
    record = finish_ftp(lab, client, held.budget())
    assert record["outcome"] == "ok", record


def test_next(lab, case, vsftpd):
    case.figure("lab", lab.tag)
    [record] = run_ftp(lab, "client", lab.ip("server"), [download(case)])
    assert record["outcome"] == "ok", record
'''

SUITES = {"s2": S2_SUITE, "s4": S4_SUITE, "s3": S3_SUITE}
# inner case -> the process it kills, as the failure names it
KILLED = {
    "s2": {
        "test_controller": "controller on root namespace",
        "test_conntrackd": "fw1-conntrackd on fw1",
        "test_agent": "fw1-sync-defer on fw1",
        "test_echo_server": "echo-srv1 on srv1",
    },
    "s4": {
        "test_haproxy": "lb1-haproxy on lb1",
        "test_nginx": "lb1-nginx on lb1",
        "test_keepalived": "lb1-keepalived on lb1",
    },
    "s3": {"test_vsftpd": "vsftpd on server"},
}
# Started as daemons (lab.devices.base.daemon, the controller): the case stops at its next
# wait. The echo server (lab.traffic) is not marked yet: its case runs its load to the end.
AT_A_WAIT = {"test_controller", "test_conntrackd", "test_agent", "test_haproxy", "test_nginx"}
AT_A_WAIT |= {"test_keepalived", "test_vsftpd"}
FORKING = {"test_nginx", "test_keepalived"}  # a worker, a VRRP child: orphans the group kill ends
AT_WAIT_BOUND = 2.0  # s: from the kill to the failure, for a case that stops at its next wait
BOUND = 15.0  # s: from the kill to the case's end, its teardown done (the load's end at most)
STOPPED = "the case stopped at the wait that noticed it"


def run_suite(folder: Path, name: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """The suite `name` run by pytest in a subprocess; its output and summary.json."""
    folder.mkdir(parents=True, exist_ok=True)
    suite = folder / f"test_inner_{name}.py"
    suite.write_text(textwrap.dedent(SUITES[name]))
    results = folder / "results"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(suite)]
    out = subprocess.run(
        [*argv, "--results-root", str(results)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    summary = json.loads(((results / "latest").resolve() / "summary.json").read_text())
    return out, summary


@pytest.mark.parametrize("lab_name", list(SUITES))
def test_a_process_killed_mid_case(case: Case, lab_name: str):
    """A process killed with SIGKILL mid-case: its case ends naming it, the next passes, nothing is left"""
    out, summary = run_suite(case.path / lab_name, lab_name)
    case.keep(case.path / lab_name / "results", f"the inner run of the {lab_name} suite")
    by_name = {c["name"].split(".", 1)[1]: c for c in summary}
    assert set(by_name) >= set(KILLED[lab_name]) | {"test_next"}, out.stdout[-3000:]
    seen: dict[str, Any] = {}
    for inner, named in KILLED[lab_name].items():
        c = by_name[inner]
        message = c["message"]
        assert c["verdict"] in ("failed", "error"), c
        assert f"lab process crashed: {named} exited -9 (killed by SIGKILL)" in message, message
        assert f"{named}: last lines of its log" in message, message
        ended = case_end(c) - c["figures"]["killed at"]
        failed = ended - c["phases"].get("teardown", 0.0)
        seen[inner] = {
            "kill to the failure (s)": round(failed, 2),
            "kill to the case's end, teardown done (s)": round(ended, 2),
            "stopped at a wait": STOPPED in message,
            "its process group ended with it": "more of its process group" in message,
        }
        case.figure("each killed process: from the kill, how its case ended", seen)
        assert 0 < ended < BOUND, f"{inner}: {ended:.1f} s from the kill to its end: {message}"
        if inner in AT_A_WAIT:
            assert STOPPED in message and failed < AT_WAIT_BOUND, f"{inner}: {failed:.2f} s: {message}"
        assert (inner in FORKING) == ("more of its process group" in message), message
    assert by_name["test_next"]["verdict"] == "passed", by_name["test_next"]["message"]
    if lab_name == "s2":  # the controller is the lab's: the next case ran on a new lab
        assert by_name["test_next_after_the_controller"]["verdict"] == "passed", by_name
        killed, after = (
            by_name[n]["figures"]["lab"] for n in ("test_controller", "test_next_after_the_controller")
        )
        assert killed != after, f"the case after the controller's death ran on the same lab {killed}"
        assert "the lab is removed with this case" in by_name["test_controller"]["message"], by_name
    tags = {c["figures"]["lab"] for c in summary if "lab" in c["figures"]}
    _gone(tags)
    victims = {c["figures"]["victim"]["pid"]: c["name"] for c in summary if "victim" in c["figures"]}
    left = {name: group_members(pid) for pid, name in victims.items() if group_members(pid)}
    assert not left, f"processes of a killed one's group still running: {left}"
    assert out.returncode == 1, out.stdout[-3000:]


def case_end(inner: dict[str, Any]) -> float:
    """When an inner case ended (its teardown done): its case.json's last write."""
    return (Path(inner["path"]) / "case.json").stat().st_mtime
