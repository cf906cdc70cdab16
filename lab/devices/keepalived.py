"""VRRP device: keepalived moves a virtual address to the standby when the active node
stops advertising.

Lifecycle (`lab.devices.base`): VrrpInstance(s) -> `vrrp_group_problems` -> render
(`lab/render/keepalived.py`) -> `keepalived -t` -> started in the foreground, owned (its
pid files in the run's directory: two nodes of one lab share the file system) -> ready
when it logs the state it entered. Its transitions are its evidence; it keeps no sessions.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lab.config import VrrpInstance, refuse, vrrp_group_problems
from lab.devices.base import Device, Runner, daemon
from lab.errors import LabError
from lab.render.keepalived import render_keepalived

if TYPE_CHECKING:
    pass

_STATE = re.compile(r"\((?P<instance>[\w-]+)\) Entering (?P<state>MASTER|BACKUP|FAULT) STATE")


class Keepalived(Device):
    """keepalived (VRRP only) on `node` with one instance or a sync group of several."""

    def __init__(
        self,
        runner: Runner,
        node: str,
        instances: VrrpInstance | Sequence[VrrpInstance],
        name: str,
        built_by_lab: bool = True,
    ):
        super().__init__(runner, node, name, built_by_lab)
        self.instances = [instances] if isinstance(instances, VrrpInstance) else list(instances)
        self.conf_path = runner.paths.root / f"{name}.conf"

    keeps_sessions: ClassVar[bool] = False
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = "keepalived -t -f <conf>"
    ready_on: ClassVar[str] = _STATE.pattern

    def made_with(self) -> Any:
        return self.instances

    def configure(self, instances: Sequence[VrrpInstance], timeout: float = 10) -> None:
        """Validate, render, check (keepalived -t), start, wait until it chose a state."""
        self._configurable()
        if shutil.which("keepalived") is None:
            raise LabError("keepalived is not installed: run scripts/bootstrap.sh")
        refuse(vrrp_group_problems(instances))
        self.instances = list(instances)
        self.conf_path.write_text(render_keepalived(self.instances, self.node))
        self.check(self.conf_path)
        runtime = self.runner.runtime_dir()
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
        self.proc = daemon(
            self.runner.start(self.node, argv, self.name, ready=self.ready_on, ready_timeout=timeout)
        )

    def check(self, path: Path) -> None:
        """keepalived's own check of the rendered file, refused with its last words."""
        refused = f"keepalived on {self.node} rejects {path}: "
        self._run_check(["keepalived", "-t", "-f", str(path)], lambda out: refused + out.strip()[-300:])

    def stop(self) -> None:
        """End keepalived by PID; the virtual addresses go too: keepalived removes them
        when it is told to stop, but one killed with SIGKILL leaves them on the node."""
        super().stop()
        for instance in self.instances:
            argv = ["ip", "addr", "del", instance.vip, "dev", instance.interface]
            self.runner.run(self.node, argv, check=False)

    def transitions(self) -> list[tuple[str, str]]:
        """(instance, state) in the order keepalived entered them."""
        text = self.proc.output() if self.proc is not None else ""
        return [(m["instance"], m["state"]) for m in _STATE.finditer(text)]

    def state(self) -> str | None:
        """The state it entered last (the sync group moves together)."""
        changes = self.transitions()
        return changes[-1][1] if changes else None
