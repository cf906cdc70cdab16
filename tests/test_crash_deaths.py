"""A process that dies mid-case (issue 26, point 3), the parts that need no lab: how a
death is told (exit, log tail), how the supervisor notices daemons that ended on their own
(and only those), ends what their process group left, and how a wait stops at once."""

from __future__ import annotations

import signal
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.deaths import Death, deaths_message, exit_text, group_members, log_tail
from lab.errors import LabTimeout, ProcessDied
from lab.procs import Supervisor
from lab.pytest_plugin import _message
from lab.wait import unwatch, wait_until, watch


def test_exit_in_words():
    assert exit_text(-9) == "exited -9 (killed by SIGKILL)"
    assert exit_text(-15) == "exited -15 (killed by SIGTERM)"
    assert exit_text(2) == "exited 2"
    assert exit_text(None) == "still running"


def test_log_tail_keeps_the_last_lines_cut_to_a_width():
    text = "\n".join(f"line {i}" for i in range(30)) + "\n\n   \n" + "x" * 500 + "\n"
    tail = log_tail(text, lines=3, width=20)
    assert tail == ("line 28", "line 29", "x" * 17 + "...")
    assert log_tail("") == ()


def death(**changes: object) -> Death:
    fields: dict[str, object] = {
        "name": "lb1-haproxy",
        "node": "lb1",
        "pid": 4242,
        "returncode": -9,
        "log_path": Path("/r/logs/lb1-haproxy.log"),
        "tail": ("[NOTICE] haproxy started", "127.0.0.1:40000 [02/Dec] web/r1 200"),
        "ran_s": 3.25,
    }
    return Death(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_death_names_the_process_its_exit_and_its_last_lines():
    one = death(leftovers=1)
    assert one.headline() == (
        "lb1-haproxy on lb1 exited -9 (killed by SIGKILL), pid 4242, noticed 3.2 s after it started, "
        "1 more of its process group ended with it"
    )
    message = deaths_message([one, death(name="echo-srv1", node="srv1", pid=7, returncode=1, tail=())])
    lines = message.splitlines()
    # the first line names every death (what the plugin has always begun with)
    assert lines[0].startswith("lab process crashed: lb1-haproxy on lb1 exited -9 (killed by SIGKILL)")
    assert "; echo-srv1 on srv1 exited 1, pid 7" in lines[0]
    assert lines[1:] == [
        "  lb1-haproxy on lb1: last lines of its log /r/logs/lb1-haproxy.log:",
        "    | [NOTICE] haproxy started",
        "    | 127.0.0.1:40000 [02/Dec] web/r1 200",
        "  echo-srv1 on srv1: its log /r/logs/lb1-haproxy.log is empty",
    ]


# A leader that starts a child in its own process group (as nginx's master its worker,
# vsftpd its session processes) and prints both PIDs.
PARENT = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("child", child.pid, flush=True)
    time.sleep(60)
""")


@pytest.fixture
def supervisor(tmp_path: Path):
    made = Supervisor(tmp_path / "logs", f"sltest{time.monotonic_ns() % 100000}", lambda node: None)
    yield made
    made.close()


def test_a_dead_daemon_is_noticed_once_and_its_orphans_ended(supervisor: Supervisor):
    leader = supervisor.start(None, [sys.executable, "-c", PARENT], "leader", ready=r"child \d+", daemon=True)
    child = int(leader.output().split()[1])
    assert group_members(leader.pid) == [child]
    leader.popen.send_signal(signal.SIGKILL)
    leader.popen.wait(5)
    [found] = supervisor.notice()
    assert (found.name, found.returncode, found.leftovers, found.daemon) == ("leader", -9, 1, True)
    assert found.tail == (f"child {child}",)
    wait_until(lambda: not group_members(leader.pid), 5, "the orphan to end")
    assert leader.stopped and supervisor.notice() == [] and supervisor.deaths == [found]


def test_one_shots_and_stopped_processes_are_no_deaths(supervisor: Supervisor):
    done = supervisor.start(None, ["true"], "client")
    failed = supervisor.start(None, ["false"], "other-client")
    stopped = supervisor.start(None, ["sleep", "30"], "server", daemon=True)
    supervisor.stop(stopped)
    done.popen.wait(5)
    failed.popen.wait(5)
    assert supervisor.notice() == []  # a client that ended is no daemon's death
    # but one that failed and was not collected is, once the case is over
    [found] = supervisor.notice(everyone=True)
    assert (found.name, found.returncode, found.daemon) == ("other-client", 1, False)
    assert supervisor.notice(everyone=True) == [] and not done.stopped  # its case collects it


def test_the_lab_wide_are_told_from_the_cases(supervisor: Supervisor):
    kept = supervisor.start(None, ["sleep", "30"], "controller", keep=True, daemon=True)
    before = supervisor.start(None, ["sleep", "30"], "module-server", daemon=True)
    supervisor.case_mark = len(supervisor.procs)
    mine = supervisor.start(None, ["sleep", "30"], "case-server", daemon=True)
    for proc in (kept, before, mine):
        proc.popen.kill()
        proc.popen.wait(5)
    wide = {d.name: d.lab_wide for d in supervisor.notice()}
    assert wide == {"controller": True, "module-server": True, "case-server": False}


def test_a_wait_stops_at_the_first_check_after_a_death(supervisor: Supervisor):
    server = supervisor.start(None, ["sleep", "30"], "echo-srv1", daemon=True)

    def check() -> None:
        new = supervisor.notice()
        if new:
            raise ProcessDied(deaths_message(new), new)

    watch(check)
    try:
        started = time.monotonic()
        server.popen.kill()
        with pytest.raises(ProcessDied, match=r"echo-srv1 on root namespace exited -9 \(killed by SIGKILL\)"):
            wait_until(lambda: False, 10, "something that never comes")
        assert time.monotonic() - started < 1
        with pytest.raises(LabTimeout, match="gave up after 0.2 s"):  # raised once, then plain waits
            wait_until(lambda: False, 0.2, "something else")
    finally:
        unwatch(check)
    unwatch(check)  # twice: nothing


def test_a_long_failure_keeps_what_died_and_where_it_failed():
    died = "lab process crashed: lb1-haproxy on lb1 exited -9 (killed by SIGKILL)"
    long = (
        f"{died}\n\nand the case failed (probably because of it):\n" + "trace\n" * 1000 + "E   assert 3 == 0"
    )
    kept = _message(SimpleNamespace(longrepr=long), died, limit=300)  # type: ignore[arg-type]
    assert kept.startswith(died + "\n...\n") and kept.endswith("E   assert 3 == 0") and len(kept) <= 300
    assert _message(SimpleNamespace(longrepr="short"), died) == "short"  # type: ignore[arg-type]
    assert _message(SimpleNamespace(longrepr="x" * 5000), "") == "x" * 3000  # type: ignore[arg-type]
