"""Session sync: conntrackd (FTFW) copies a node's session table to its peer, so that the
standby knows the sessions (and their NAT) it takes over.

Lifecycle (`lab.devices.base`): SyncSettings -> render (`lab/render/conntrackd.py`) -> no
check: conntrackd has no dry run (its `-t` resets the kernel's timers) -> started in the
foreground, owned (ended by PID with its case) -> ready when its control socket exists
(a bad file ends it at once, which the wait reports). It keeps no table the lab reads:
the sessions it learns go into the kernel's, which the node's firewall or balancer lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from lab.devices.base import Device, Runner, daemon
from lab.errors import LabError
from lab.render.conntrackd import SyncSettings, render_conntrackd

if TYPE_CHECKING:
    from lab.procs import Proc

LIBERAL = "net.netfilter.nf_conntrack_tcp_be_liberal"


class ConntrackSync(Device):
    """conntrackd on `node`. With `liberal`, configuring it also lets the node's conntrack
    accept segments outside the windows it has seen, until the next case: conntrackd
    copies a session's state, not its windows, so a standby would find the next segments
    out of window (as S2's `liberal_windows`; the firewall sets that in its policy)."""

    def __init__(
        self, runner: Runner, node: str, name: str, liberal: bool = False, built_by_lab: bool = True
    ):
        super().__init__(runner, node, name, built_by_lab)
        self.liberal = liberal

    keeps_sessions: ClassVar[bool] = False
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = (
        "none: conntrackd has no dry run (its -t resets kernel timers); a bad file ends it at start"
    )
    ready_on: ClassVar[str] = "its control socket exists"

    def configure(self, settings: SyncSettings, timeout: float = 10) -> Proc:
        """Render, start in the foreground, wait for the control socket; returns the process."""
        self._configurable()
        if self.liberal:
            self.runner.run(self.node, ["sysctl", "-qw", f"{LIBERAL}=1"])
        path = self.runner.paths.root / f"{self.name}.conf"
        runtime = self.runner.runtime_dir()
        path.write_text(render_conntrackd(settings, runtime, self.node))
        self.check(path)
        socket_path = runtime / f"{self.node}-conntrackd.ctl"
        socket_path.unlink(missing_ok=True)
        if not self.running():
            # A conntrackd killed with SIGKILL leaves its lock file, and the next refuses to
            # start ("perhaps conntrackd already running?"); none of this device's runs.
            (runtime / f"{self.node}-conntrackd.lock").unlink(missing_ok=True)
        proc = self.proc = daemon(self.runner.start(self.node, ["conntrackd", "-C", str(path)], self.name))

        def listening() -> bool:
            if not proc.running():
                raise LabError(f"conntrackd on {self.node} exited: {proc.output().strip()[-300:]}")
            return socket_path.exists()

        self.runner.wait(listening, timeout, f"conntrackd on {self.node} to listen")
        return proc

    def check(self, path: Path) -> None:
        """Nothing to run: conntrackd has no dry run (see `checker`)."""

    def reset(self) -> None:
        """Windows strict again (with `liberal`); the process, if a case started it, ended
        with that case, and one a fixture started runs on until `stop()`."""
        if self.liberal:
            self.runner.run(self.node, ["sysctl", "-qw", f"{LIBERAL}=0"])

    def stop(self) -> None:
        super().stop()
        self.proc = None
