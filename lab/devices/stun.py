"""An RFC 5780 STUN server device: coturn's turnserver, STUN only, on two addresses of a
lab host, for NAT behaviour discovery (`lab.characterize.nat`).

Lifecycle (`lab.devices.base`): StunConfig -> `problems()` -> render
(`lab/render/turnserver.py`) -> no check: turnserver has no dry run, and an option it
does not know is only logged ("Bad configuration format") while it starts anyway, so the
start refuses a log that says so -> start in the foreground, owned by the lab (ended by
PID with its case) -> ready when all four UDP endpoints listen (two addresses x two ports;
coturn logs each, but `ss` is the fact) and its log does not say RFC 5780 is off. It keeps
no session table: each client endpoint it saw is in its log (`bindings()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from lab.config import refuse
from lab.devices.base import Device, Runner, daemon
from lab.errors import ConfigError, LabError
from lab.render.turnserver import StunConfig, render_turnserver

# What turnserver logs, instead of exiting, when its file is wrong or RFC 5780 cannot work.
_REFUSALS = re.compile(r"Bad configuration format: .*|.*cannot support STUN CHANGE_REQUEST.*")
_ENDPOINT = re.compile(r"New UDP endpoint: local addr ([\d.]+:\d+), remote addr ([\d.]+:\d+)")


@dataclass(frozen=True)
class StunBinding:
    """A client endpoint the server saw first on one of its endpoints: after any NAT, the
    client's mapped address and port (the server's side of the evidence)."""

    server: str  # address:port it arrived on
    client: str  # address:port it came from


def parse_turnserver_log(text: str) -> list[StunBinding]:
    """The new client endpoints in turnserver's verbose log (`log-binding`), in order."""
    return [StunBinding(m[1], m[2]) for m in _ENDPOINT.finditer(text)]


class StunServer(Device):
    """coturn's turnserver on `node` as an RFC 5780 STUN server with `config`."""

    keeps_sessions: ClassVar[bool] = False
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = (
        "none: turnserver has no dry run; it logs an unknown option ('Bad configuration format') and "
        "starts anyway, so the start refuses that log"
    )
    ready_on: ClassVar[str] = "its four UDP endpoints listen (ss -Hlun), RFC 5780 not refused in its log"

    def __init__(self, runner: Runner, node: str, config: StunConfig, name: str, built_by_lab: bool = True):
        super().__init__(runner, node, name, built_by_lab)
        self.config = config
        self.conf_path = runner.paths.root / f"{name}.turnserver.conf"

    def made_with(self) -> Any:
        return self.config

    def configure(self, config: StunConfig, timeout: float = 10) -> None:
        """Validate, render, start, and wait until all four endpoints listen."""
        self._configurable()
        refuse(config.problems())
        self._installed("turnserver", "coturn's turnserver")
        self.config = config
        state = self.runner.runtime_dir() / f"{self.name}-turnserver"
        state.mkdir(mode=0o755, exist_ok=True)
        self.conf_path.write_text(render_turnserver(config, str(state)))
        self.check(self.conf_path)
        # --log-file on the command line too: messages from before the file's own
        # log-file line would otherwise open a log under /var/log.
        argv = ["turnserver", "-c", str(self.conf_path), "--log-file", "stdout"]
        self.proc = daemon(self.runner.start(self.node, argv, self.name))
        self._wait_listening_udp(config, timeout)
        refusals = list(dict.fromkeys(_REFUSALS.findall(self.proc.output())))  # it reads its file 3 times
        if refusals:
            self.stop()
            raise ConfigError(
                [f"turnserver on {self.node} ({self.conf_path}): {r.strip()}" for r in refusals]
            )

    def check(self, path: Path) -> None:
        """Nothing to run: turnserver has no dry run (see `checker`)."""

    def _wait_listening_udp(self, config: StunConfig, timeout: float) -> None:
        """Wait until every endpoint of `config` listens; fail early if turnserver exited."""
        proc, node = self.proc, self.node
        assert proc is not None
        wanted = {f"{address}:{port}" for address, port in config.listeners()}

        def listening() -> bool:
            if not proc.running():
                raise LabError(f"turnserver on {node} exited at start: {proc.output().strip()[-300:]}")
            table = self.runner.run(node, ["ss", "-Hlun"], check=False)
            found = {row.split()[3] for row in table.splitlines() if len(row.split()) > 3}
            return wanted <= found

        where = ", ".join(sorted(wanted))
        self.runner.wait(listening, timeout, f"turnserver on {node} to listen on {where} (UDP)")

    def bindings(self) -> list[StunBinding]:
        """Each client endpoint it saw, from its log."""
        return parse_turnserver_log(self.proc.output() if self.proc is not None else "")
