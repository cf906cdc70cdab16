"""Process supervision: every process a lab starts is owned, logged and ended by PID.

A `Supervisor` starts processes in a node's namespace (or the root namespace, for the
controller on loopback), waits for the event that says each is up, runs short commands to
completion, and stops what it started, SIGTERM then SIGKILL. Its runtime directory (UNIX
sockets, lock files) is short and per run, under /run: a socket path must stay below
107 characters whatever the checkout's path.

A process started as a `daemon` (a server, a device's daemon, an agent, the controller)
runs until the lab stops it: its ending on its own is a *death*. `notice()` finds them,
each as a `Death` (`lab.deaths`: name, exit, the last lines of its log), ends what is
left of its process group (an nginx worker, keepalived's VRRP child: orphans once the
leader is killed) and drops it from the lab's record. One-shot processes (client loads,
a bulk receiver serving one transfer) are not daemons: they end by themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.deaths import Death, group_members, log_tail
from lab.errors import CommandError, LabError, LabTimeout
from lab.wait import wait_until

if TYPE_CHECKING:
    from lab.records import Record

log = logging.getLogger(__name__)

RUNTIME_ROOT = Path("/run/sessionlab")


@dataclass
class Proc:
    """A process the lab started in a node, with its log file.

    `keep`: the process outlives the case that started it (the controller); others are
    ended with their case. `daemon`: it runs until the lab stops it (a server, a daemon,
    an agent): its ending on its own is a death (`Supervisor.notice`), told with the last
    lines of its `own_log` where it has one, else of its output.
    """

    name: str
    node: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = False
    keep: bool = False
    daemon: bool = False
    started: float = field(default_factory=time.monotonic)
    own_log: Path | None = None  # where it logs itself, if not on its output (vsftpd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the process has printed `pattern` (a regex); fail early if it died."""
        regex = re.compile(pattern, re.MULTILINE)

        def ready() -> re.Match[str] | None:
            found = regex.search(self.output())
            if not found and not self.running():
                raise LabError(
                    f"{self.name} on {self.node} exited {self.popen.returncode} before "
                    f"printing /{pattern}/: {self.output().strip()[-300:] or 'no output'}"
                )
            return found

        return wait_until(ready, timeout, f"{self.name} on {self.node} to print /{pattern}/")


def host_run(argv: Sequence[str], timeout: float = 30, check: bool = True) -> str:
    """Run a command in the root namespace (ovs-vsctl, ip netns); failures are CommandError."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabTimeout(f"`{' '.join(argv)}` still running after {timeout:g} s") from None
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed: run scripts/bootstrap.sh") from None
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout + result.stderr)
    return result.stdout


class Supervisor:
    """Owns the processes of one lab: start, run, stop by PID, and a runtime directory.

    `popen_in(node)` gives the Popen factory of a node (None: the root namespace).
    """

    def __init__(self, logs: Path, tag: str, popen_in: Callable[[str], Callable[..., Any]]):
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runtime = RUNTIME_ROOT / tag
        self.procs: list[Proc] = []
        self._popen_in = popen_in
        self.record: Record | None = None  # the lab's record (lab.records), once it has one
        self.deaths: list[Death] = []  # every process that ended unasked, as noticed
        self.case_mark = 0  # procs before this index are not the running case's
        self._lock = threading.Lock()  # waits in several threads notice at once

    def runtime_dir(self) -> Path:
        """The run's directory for sockets and lock files (made on first use)."""
        self.runtime.mkdir(parents=True, exist_ok=True)
        return self.runtime

    def run(
        self,
        node: str | None,
        argv: Sequence[str],
        timeout: float = 30,
        check: bool = True,
        merge: bool = True,
    ) -> str:
        """Run a command in a node's namespace (None: the root namespace) to completion;
        its output: stdout and stderr together, or with `merge` off stdout alone (a table
        that a summary line on stderr must not cut in two)."""
        factory = subprocess.Popen if node is None else self._popen_in(node)
        err = subprocess.STDOUT if merge else subprocess.PIPE
        popen = factory(list(argv), stdout=subprocess.PIPE, stderr=err)
        # Recorded while it runs: a run killed in the middle of a long command (a ping of
        # 5,000) leaves it to `clean` (found by testcases/kill_series.py); one interrupted
        # here (Ctrl-C, a worker whose run ended) is ended at once.
        if self.record is not None and node is not None:
            self.record.add_process(popen.pid, f"{argv[0]} on {node}")
        try:
            out, errors = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.communicate()
            raise LabTimeout(f"`{' '.join(argv)}` on {node} still running after {timeout:g} s") from None
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        finally:
            if self.record is not None and node is not None:
                self.record.drop_process(popen.pid)
        text = out.decode(errors="replace")
        if check and popen.returncode != 0:
            raise CommandError(argv, popen.returncode, text + (errors or b"").decode(errors="replace"))
        return str(text)

    def start(
        self,
        node: str | None,
        argv: Sequence[str],
        name: str,
        ready: str | None = None,
        ready_timeout: float = 10,
        keep: bool = False,
        daemon: bool = False,
    ) -> Proc:
        """Start a long-running process in a node (None: the root namespace); it is
        stopped by PID with its case (or, with `keep`, at close). `ready` is a regex its
        output must show before this returns (the event it is up). A `daemon` runs until
        stopped: its ending on its own is a death (see `notice`)."""
        path = self.logs / f"{name}.log"
        with open(path, "wb") as out:
            options: dict[str, Any] = {
                "stdout": out,
                "stderr": subprocess.STDOUT,
                "stdin": subprocess.DEVNULL,
            }
            if node is None:
                popen = subprocess.Popen(list(argv), start_new_session=True, **options)
            else:
                popen = self._popen_in(node)(list(argv), **options)
        proc = Proc(name, node or "root namespace", list(argv), popen, path, keep=keep, daemon=daemon)
        self.procs.append(proc)
        if self.record is not None:
            self.record.add_process(popen.pid, name)
        if ready is not None:
            self.await_ready(proc, ready, ready_timeout)
        return proc

    def await_ready(self, proc: Proc, ready: str, timeout: float = 10) -> None:
        """Wait until the process printed `ready` (a regex); stopped if it never does."""
        try:
            proc.wait_for_output(ready, timeout)
        except LabError:
            self.stop(proc)
            raise

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 5) -> int | None:
        """End a process by PID: `sig`, then SIGKILL if it outlives `timeout`."""
        if proc.stopped:
            return proc.popen.returncode
        proc.stopped = True
        if proc.running():
            try:
                proc.popen.send_signal(sig)
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)
            except ProcessLookupError:
                pass
        if self.record is not None:
            self.record.drop_process(proc.pid)
        return proc.popen.returncode

    def stop_since(self, first: int) -> list[Proc]:
        """Stop what was started since `first` (an index into `procs`), but kept ones."""
        ended = [p for p in self.procs[first:] if not p.keep]
        for proc in reversed(ended):
            self.stop(proc)
        return ended

    def crashed(self) -> list[Proc]:
        """Processes that ended without being asked to."""
        return [p for p in self.procs if not p.stopped and not p.running()]

    def notice(self, everyone: bool = False) -> list[Death]:
        """The daemons that ended on their own since the last call (with `everyone`, also
        any other process that failed, non-zero or by a signal, and was not collected: a
        one-shot that exited 0 did its job): each recorded in `deaths`, what is left of
        its process group ended, and then stopped as far as the lab is concerned (its
        record dropped), so each is noticed once."""
        with self._lock:
            found = [p for p in self.crashed() if p.daemon or (everyone and p.popen.returncode != 0)]
            return [self._bury(p) for p in found]

    def _bury(self, proc: Proc) -> Death:
        leftovers = group_members(proc.pid)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        log_path, text = proc.log_path, proc.output()
        if proc.own_log is not None and proc.own_log.exists():
            log_path, text = proc.own_log, proc.own_log.read_text(errors="replace")
        death = Death(
            name=proc.name,
            node=proc.node,
            pid=proc.pid,
            returncode=proc.popen.returncode,
            log_path=log_path,
            tail=log_tail(text),
            ran_s=time.monotonic() - proc.started,
            lab_wide=proc.keep or self.procs.index(proc) < self.case_mark,
            daemon=proc.daemon,
            leftovers=len(leftovers),
        )
        self.deaths.append(death)
        self.stop(proc)  # already ended: only its record goes
        log.warning("%s", death.headline())
        return death

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        shutil.rmtree(self.runtime, ignore_errors=True)
