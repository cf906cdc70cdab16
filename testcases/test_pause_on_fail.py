"""`run --pause-on-fail` against a real lab, at a terminal (a pseudo-terminal): a case
fails, the prompt opens on its lab as the failure left it (the process it started, the
session the firewall holds), leaving ends the run and removes the lab as `topo` does, and
the run leaves nothing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import secrets
import subprocess
import sys
import termios
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.records import RECORDS, Record
from testcases.own_runs import own_records
from testcases.terminal import Output
from testcases.test_cli_lab import _gone  # no record, bridge or runtime folder left

ROOT = Path(__file__).resolve().parents[1]
SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))
PROMPT = "sessionlab> "

FAILING_SUITE = textwrap.dedent('''
    """A suite whose first case fails with its lab busy: a process of its own running and
    a session in the firewall's table."""

    LAB_TOPOLOGY = "s1"


    def test_fails_with_work_in_flight(lab, case):
        """Fails on purpose, a sleeper running and a ping's session in the firewall"""
        lab.start("server", ["sleep", "{marker}"], "sleeper")
        out = lab.run("client", ["ping", "-c", "1", "-W", "2", lab.ip("server")], check=False)
        assert "1 received" in out, out
        assert False, "fails on purpose {marker}"


    def test_runs_after_the_pause(lab, case):
        """Never runs: leaving the prompt ends the run"""
        out = lab.run("client", ["ping", "-c", "1", "-W", "2", lab.ip("server")], check=False)
        assert "1 received" in out, out
''')


pytestmark = pytest.mark.usefixtures("own_label")  # its runs' labs, the records it reads
_records = own_records  # testcases/own_runs.py


def _tag(text: str) -> str:
    """The lab's tag, from the prompt's banner."""
    found = re.search(r"lab (\S+) is as the failure left it", _plain(text))
    assert found, _plain(text)
    return found.group(1)


def _command(suite: Path, results: Path) -> list[str]:
    return [SESSIONLAB, "run", str(suite), "--pause-on-fail", "--results", str(results)]


def _plain(text: str) -> str:
    """Terminal output without its colours and cursor moves."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _own_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is the pseudo-terminal
    (so that Ctrl-C typed there is a SIGINT, as at a real one)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _Terminal(Output):
    """A command at a pseudo-terminal: what it writes as it comes, what is typed to it."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, preexec_fn=_own_terminal
        )
        os.close(slave)
        super().__init__(proc, self.master)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode())


@contextlib.contextmanager
def _at_a_terminal(argv: list[str]) -> Iterator[_Terminal]:
    """The command at a pseudo-terminal; after the block, one still running is killed and
    what its labs recorded is removed (so a failed test leaves nothing either)."""
    before = _records()
    term = _Terminal(argv)
    try:
        yield term
    finally:
        if term.proc.poll() is None:
            os.killpg(term.proc.pid, 9)
            term.proc.wait()
            for tag in _records() - before:
                record = Record.load(RECORDS / f"{tag}.json")
                if record.orphaned():
                    record.remove()
        os.close(term.master)


def test_pause_on_fail_opens_the_prompt_on_the_lab_as_the_failure_left_it(tmp_path):
    marker = str(600 + secrets.randbelow(9000))  # the sleeper's argument: this run's own
    suite = tmp_path / "failing_suite.py"
    suite.write_text(FAILING_SUITE.replace("{marker}", marker))
    with _at_a_terminal(_command(suite, tmp_path)) as term:
        banner = term.until(PROMPT)
        # The process the case started is still running, the firewall still holds its session.
        term.type(f"server pgrep -a -x -f 'sleep {marker}'\n")
        sleeper = term.until(PROMPT, 30)
        term.type("fw conntrack -L -p icmp\n")
        table = term.until(PROMPT, 30)
        term.type("exit\n")
        text = term.rest()
    everything = banner + sleeper + table + text
    banner = _plain(banner)
    reason = "failing_suite.py::test_fails_with_work_in_flight failed: AssertionError: fails on purpose"
    assert f"{reason} {marker}" in banner, banner
    assert "Ctrl-D, `exit` or Ctrl-C at the prompt: the run ends here" in banner
    assert f"sleep {marker}" in sleeper.split("\n", 1)[1], sleeper
    assert re.search(r"^icmp\s.*type=8 code=0", table, re.MULTILINE), table  # the ping's session
    assert term.proc.returncode == 1, everything  # a case failed; leaving ended the run
    assert "test_runs_after_the_pause" not in _plain(text), text
    _gone({_tag(banner)})
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout
    assert not left.strip(), f"the case's sleeper is still running: {left}"


def test_ctrl_c_at_the_paused_prompt_ends_the_run_and_removes_its_lab(tmp_path):
    marker = str(600 + secrets.randbelow(9000))
    suite = tmp_path / "failing_suite.py"
    suite.write_text(FAILING_SUITE.replace("{marker}", marker))
    with _at_a_terminal(_command(suite, tmp_path)) as term:
        text = term.until(PROMPT)
        term.type("\x03")  # Ctrl-C at an empty prompt
        text += term.rest()
    assert term.proc.returncode == 130, _plain(text)
    assert "test_runs_after_the_pause" not in _plain(text).split(PROMPT, 1)[1], _plain(text)
    _gone({_tag(text)})
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout
    assert not left.strip(), f"the case's sleeper is still running: {left}"
