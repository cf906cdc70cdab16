"""Redundant pairs: VRRP (keepalived) moves a virtual address to the standby when the
active node stops advertising; conntrackd copies the session table to the peer so that
the standby knows the sessions (and their NAT) it takes over.

Both run as owned processes in the foreground (keepalived with its pid files in the
run's directory: two nodes of one lab share the file system), ended by PID.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab.config import VrrpInstance
from lab.errors import CommandError, ConfigError, LabError
from lab.render.conntrackd import SyncSettings, render_conntrackd
from lab.render.keepalived import render_keepalived

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

_STATE = re.compile(r"\((?P<instance>[\w-]+)\) Entering (?P<state>MASTER|BACKUP|FAULT) STATE")


class Keepalived:
    """keepalived (VRRP only) on `node` with one instance or a sync group of several."""

    def __init__(self, lab: Lab, node: str, instances: VrrpInstance | Sequence[VrrpInstance], name: str):
        if shutil.which("keepalived") is None:
            raise LabError("keepalived is not installed: run scripts/bootstrap.sh")
        self.lab, self.node, self.name = lab, node, name
        self.conf_path = lab.paths.root / f"{name}.conf"
        self.conf_path.write_text(render_keepalived(instances, node))
        self.proc: Proc | None = None

    def start(self, timeout: float = 10) -> Keepalived:
        """Check the configuration (keepalived -t), start, wait until it chose a state."""
        try:
            self.lab.run(self.node, ["keepalived", "-t", "-f", str(self.conf_path)])
        except CommandError as exc:
            raise ConfigError(
                f"keepalived on {self.node} rejects {self.conf_path}: {exc.output.strip()[-300:]}"
            ) from None
        runtime = self.lab.runtime_dir()
        argv = [
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "--vrrp",
            "-f",
            str(self.conf_path),
        ]
        argv += ["-p", str(runtime / f"{self.name}.pid"), "-r", str(runtime / f"{self.name}-vrrp.pid")]
        argv += ["-c", str(runtime / f"{self.name}-checkers.pid")]
        self.proc = self.lab.start(self.node, argv, self.name, ready=_STATE.pattern, ready_timeout=timeout)
        return self

    def transitions(self) -> list[tuple[str, str]]:
        """(instance, state) in the order keepalived entered them."""
        text = self.proc.output() if self.proc is not None else ""
        return [(m["instance"], m["state"]) for m in _STATE.finditer(text)]

    def state(self) -> str | None:
        """The state it entered last (the sync group moves together)."""
        changes = self.transitions()
        return changes[-1][1] if changes else None

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)


def start_conntrackd(lab: Lab, node: str, settings: SyncSettings, name: str) -> Proc:
    """conntrackd (FTFW) in the foreground on `node`, ready when its control socket exists."""
    path = lab.paths.root / f"{name}.conf"
    runtime = lab.runtime_dir()
    path.write_text(render_conntrackd(settings, runtime, node))
    socket_path = runtime / f"{node}-conntrackd.ctl"
    socket_path.unlink(missing_ok=True)
    proc = lab.start(node, ["conntrackd", "-C", str(path)], name)

    def listening() -> bool:
        if not proc.running():
            raise LabError(f"conntrackd on {node} exited: {proc.output().strip()[-300:]}")
        return socket_path.exists()

    lab.wait(listening, 10, f"conntrackd on {node} to listen")
    return proc
