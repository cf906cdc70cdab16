"""The health-check agent device: checks a balancer's real servers as a balancer does
(`lab.health`: `fall` failures take a server out, `rise` successes put it back) and
reloads the balancer's ruleset, or rewrites a controller's service file, on each change.

Lifecycle (`lab.devices.base`): HealthAgentConfig -> `problems()` -> no rendered file and
no daemon checker: the agent is the lab's own (`lab.agents.health_check`), given its
configuration as JSON, which it reads with `lab.config` (refusing a bad one before it is
up) -> started as an owned process -> ready on its `"event": "ready"` line. Its events
(ready, down, up) are its evidence; it keeps no sessions.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lab.config import HealthCheck, L4Balancer, refuse
from lab.devices.base import Device, daemon
from lab.events import proc_events
from lab.render.balancer import DsrPorts

if TYPE_CHECKING:
    from lab.procs import Proc


@dataclass(frozen=True)
class HealthAgentConfig:
    """Check `target`'s servers by `check` from source ports `ports` (the case's). With
    `dsr`, the ruleset the agent reloads is a DSR one; with `service_file`, the agent
    rewrites that file (a controller balances) instead of a ruleset."""

    check: HealthCheck
    ports: range
    target: L4Balancer
    server_side: str
    dsr: DsrPorts | None = None
    service_file: str | None = None

    def problems(self) -> list[str]:
        problems = self.check.problems("check") + self.target.problems()
        if len(self.ports) == 0:
            problems.append("ports: no source port to check from")
        return problems


class HealthAgent(Device):
    """The health-check agent on node `node`."""

    keeps_sessions: ClassVar[bool] = False
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = (
        "none: the lab's own agent; it refuses a bad configuration before its ready event"
    )
    ready_on: ClassVar[str] = '"event": "ready"'

    def configure(self, config: HealthAgentConfig) -> Proc:
        """Validate, start the agent, wait for its ready event; returns its process."""
        self._configurable()
        refuse(config.problems(), f"health checks on {self.node}")
        data = {
            "balancer": asdict(config.target),
            "check": asdict(config.check),
            "server_side": config.server_side,
            "dsr": asdict(config.dsr) if config.dsr is not None else None,
            "service_file": config.service_file,
        }
        argv = [sys.executable, "-m", "lab.agents.health_check", "--config", json.dumps(data)]
        argv += ["--first-port", str(config.ports.start), "--ports", str(len(config.ports))]
        timeout = 5 + config.check.interval_ms / 1000 * 2
        self.proc = daemon(
            self.runner.start(self.node, argv, self.name, ready=self.ready_on, ready_timeout=timeout)
        )
        return self.proc

    def check(self, path: Path) -> None:
        """Nothing to run: no daemon checker (see `checker`)."""

    def events(self) -> list[dict[str, Any]]:
        """Its events (ready, down, up), in order."""
        return proc_events(self.proc) if self.proc is not None else []

    def reset(self) -> None:
        """Forget the last case's agent: it ended with that case."""
        self.proc = None
