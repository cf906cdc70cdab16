"""What a lab process that died leaves: a `Death` (what it was, how it ended, the last
lines of its log) told in one failure message, and the orphans of its process group.

Every process the lab starts leads a process group and a session of its own (Mininet's
`mnexec -d`, or `start_new_session` in the root namespace), so what it forked (nginx's
worker, keepalived's VRRP child) is found by its group once the leader is gone.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAIL_LINES = 10  # lines of a dead process's log its report shows
TAIL_WIDTH = 200  # characters of each


def exit_text(returncode: int | None) -> str:
    """A process's exit in words: "exited 1", "exited -9 (killed by SIGKILL)"."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"exited {returncode} (killed by {name})"
    return f"exited {returncode}"


def log_tail(text: str, lines: int = TAIL_LINES, width: int = TAIL_WIDTH) -> tuple[str, ...]:
    """The last `lines` non-blank lines of a log, each cut to `width` characters."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return tuple(line if len(line) <= width else line[: width - 3] + "..." for line in kept)


@dataclass(frozen=True)
class Death:
    """A process that ended without the lab asking it to: what, where, how, and what it
    last wrote. `lab_wide`: it was not its case's (the controller, what a module fixture
    or the build started), so the lab it ran for is no longer the one the next case
    expects. `leftovers`: processes of its group ended after it (its orphans)."""

    name: str
    node: str
    pid: int
    returncode: int | None
    log_path: Path
    tail: tuple[str, ...] = ()
    ran_s: float = 0.0
    lab_wide: bool = False
    daemon: bool = True
    leftovers: int = 0

    def headline(self) -> str:
        """One line: "haproxy on lb1 exited -9 (killed by SIGKILL), pid 123, noticed 4.2 s
        after it started"."""
        line = f"{self.name} on {self.node} {exit_text(self.returncode)}, pid {self.pid}"
        line += f", noticed {self.ran_s:.1f} s after it started"
        if self.leftovers:
            line += f", {self.leftovers} more of its process group ended with it"
        return line

    def describe(self) -> str:
        """The last lines of its log, indented under where the log is."""
        where = f"{self.name} on {self.node}"
        if not self.tail:
            return f"  {where}: its log {self.log_path} is empty"
        shown = "\n".join(f"    | {line}" for line in self.tail)
        return f"  {where}: last lines of its log {self.log_path}:\n{shown}"


def deaths_message(deaths: Sequence[Death]) -> str:
    """What a case's failure says of its dead processes: one line naming each and its
    exit ("lab process crashed: ", as the plugin always said), then each one's log tail."""
    first = "lab process crashed: " + "; ".join(d.headline() for d in deaths)
    return "\n".join([first, *(d.describe() for d in deaths)])


def group_members(group: int) -> list[int]:
    """The processes whose process group and session are `group` but that are not its
    leader: what a killed leader left (a leader's PID, once reaped, may be reused, but
    not by a process that is still a member of its group)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid, pgrp, session = int(stat.parent.name), int(fields[2]), int(fields[3])
        if pgrp == group and session == group and pid != group:
            members.append(pid)
    return members


PHASES = ("setup", "call", "teardown")  # pytest's; pytest-xdist reports a dead worker's case as "???"


def worker_crash(report: Any) -> str | None:
    """xdist's message for a case whose worker died in it ("worker 'gw1' crashed while
    running '...'"), or None for a report of one of pytest's own phases."""
    return None if report.when in PHASES else str(report.longrepr)


def run_again(crash: str, verdict: str) -> str:
    """The message of a case whose worker died in it and that xdist ran again on the
    replacement: the crash stays its verdict (pytest's exit status counts it failed)."""
    return f"{crash}; {verdict} when run again on its replacement"
