"""The controller's lifecycle: an os-ken app the lab runs for its OpenFlow switches.

Started on a free loopback port before the switches, ready when the app reports every
switch configured (after a barrier), restarted per mode, stopped by PID. A switch that
never connects is named. The conntrack zones its configuration names (an app that keeps
sessions in the switches' conntrack: the S2 fabric, S4's SDN balancer) are emptied when
the lab closes: conntrack is the shared userspace datapath's, not the lab's bridges', and
would otherwise keep the lab's connections after it (an established one for a day).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.conntrack import Session
from lab.errors import LabError, LabTimeout
from lab.events import proc_events
from lab.procs import Proc, host_run
from lab.wait import wait_until

if TYPE_CHECKING:
    from lab.net import Lab


@dataclass
class ControllerApp:
    """An os-ken controller app the lab runs for its OpenFlow switches.

    `config` computes the app's configuration from the built (not yet started) lab, so it
    can name switch ports by their OpenFlow numbers.
    """

    module: str
    config: Callable[[Lab], dict[str, Any]]
    name: str = "controller"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ovs(*args: str) -> str:
    """An ovs-vsctl query's answer (empty when it fails)."""
    return host_run(["ovs-vsctl", "--timeout=3", *args], check=False).strip()


def controller_record(bridge: str) -> str:
    """The UUID of the bridge's controller record, or empty."""
    return _ovs("get", "bridge", bridge, "controller").strip("[]")


def config_zones(config: dict[str, Any]) -> set[int]:
    """The conntrack zones an app's configuration names: "zone", or "zones" by role."""
    zones = {config["zone"]} if "zone" in config else set()
    return {int(z) for z in (*zones, *dict(config.get("zones") or {}).values())}


LISTENING = r"controller listening"  # controllers.run's line once switches can connect


class Controller:
    """The running controller of one lab."""

    def __init__(self, lab: Lab, app: ControllerApp):
        self.lab = lab
        self.app = app
        self.port = free_port()
        self.proc: Proc | None = None
        self.waiting = False  # spawned, not yet given its configuration
        self.zones: set[int] = set()  # the conntrack zones its configurations named

    def _config_path(self) -> Path:
        return self.lab.paths.root / f"{self.app.name}-config.json"

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "controllers.run", self.app.module, "--port", str(self.port)]
        return argv + ["--config", str(self._config_path())]

    def spawn(self) -> None:
        """Start the app's process before the network exists: it loads os-ken (about half
        a second) while Mininet builds, then waits for the configuration `start` writes."""
        self._config_path().unlink(missing_ok=True)
        self.proc = self.lab.start(None, self._argv(), self.app.name, keep=True, daemon=True)
        self.waiting = True

    def start(self, **overrides: Any) -> Proc:
        """(Re)start the app with its configuration (plus `overrides`); a process `spawn`
        started is given its configuration instead."""
        if self.proc is not None and not self.waiting:
            self.lab.stop(self.proc)
            self.proc = None
        config = {**self.app.config(self.lab), **overrides}
        zones = config_zones(config)
        if zones and not self.zones:  # the first zones named: emptied when the lab closes
            self.lab.on_close(self.flush_zones)
        self.zones |= zones
        path = self._config_path()
        fresh = path.with_suffix(".tmp")
        fresh.write_text(json.dumps(config, indent=1))
        fresh.replace(path)  # whole: a waiting process reads it as soon as it exists
        if self.proc is None:
            self.proc = self.lab.start(
                None, self._argv(), self.app.name, ready=LISTENING, keep=True, daemon=True
            )
            return self.proc
        self.waiting = False
        self.lab.await_ready(self.proc, LISTENING)
        return self.proc

    def flush_zones(self) -> None:
        """Empty the conntrack zones the app's configurations named."""
        for zone in sorted(self.zones):
            host_run(["ovs-appctl", "--timeout=5", "dpctl/flush-conntrack", f"zone={zone}"], check=False)

    def fast_reconnect(self) -> None:
        """OVS backs off up to 8 s between reconnects; a restarted controller is back in 1 s.
        Every switch of this lab in one ovs-vsctl call (their controller records name this
        controller's port, which no other lab uses)."""
        found = _ovs("--bare", "--columns=_uuid", "find", "controller", f'target="tcp:127.0.0.1:{self.port}"')
        records = found.split()
        if records:
            command = [arg for r in records for arg in ("--", "set", "controller", r, "max_backoff=1000")]
            host_run(["ovs-vsctl", "--timeout=3", *command])

    def wait_switches(self, timeout: float = 20) -> None:
        """Wait until the app reports every switch configured; name those missing."""
        assert self.proc is not None
        proc = self.proc
        expected = {int(sw.dpid, 16): self.lab.logical(sw.name) for sw in self.lab.net.switches}

        def missing() -> dict[int, str]:
            if not proc.running():
                raise LabError(
                    f"the controller exited {proc.popen.returncode}: {proc.output().strip()[-400:]}"
                )
            ready = {int(m) for m in re.findall(r'"switch_ready".*?"dpid": (\d+)', proc.output())}
            return {d: n for d, n in expected.items() if d not in ready}

        deadline = time.monotonic() + timeout
        while missing():
            if time.monotonic() > deadline:
                waiting = missing()
                never = sorted(n for n in waiting.values() if not self.connected(self.lab.names.get(n, n)))
                unready = sorted(n for n in waiting.values() if n not in never)
                problems = []
                if never:
                    problems.append(f"switch {', '.join(never)} never connected to the controller")
                if unready:
                    problems.append(
                        f"switch {', '.join(unready)} connected but the controller never configured it"
                    )
                raise LabTimeout(f"{'; '.join(problems)} within {timeout:g} s (log: {proc.log_path})")
            time.sleep(0.05)

    @staticmethod
    def connected(bridge: str) -> bool:
        """What Open vSwitch says of the bridge's controller connection."""
        record = controller_record(bridge)
        return bool(record) and _ovs("get", "controller", record, "is_connected") == "true"

    def events(self, name: str) -> list[dict[str, Any]]:
        """The app's logged events of one kind (JSON lines with "event": name)."""
        return proc_events(self.proc, name) if self.proc is not None else []


class ControllerTable:
    """The session table a controller app writes (`session_file`, JSON) as a session
    source: each session with the device each direction crossed (`via`, `reply_via`)."""

    def __init__(self, path: Path, name: str = "controller"):
        self.path = path
        self.name = name

    def sessions(self) -> list[Session]:
        if not self.path.exists():
            return []
        rows = json.loads(self.path.read_text())["sessions"]
        out = []
        for row in rows:
            src, sport = row["client"].rsplit(":", 1)
            dst, dport = row["server"].rsplit(":", 1)
            out.append(
                Session(
                    proto="tcp",
                    src=src,
                    dst=dst,
                    sport=int(sport),
                    dport=int(dport),
                    state=None,
                    timeout=None,
                    packets=row.get("packets_in"),
                    reply_packets=row.get("packets_out"),
                    via=f"fw{row['inbound_fw']}" if row.get("inbound_fw") else None,
                    reply_via=f"fw{row['return_fw']}" if row.get("return_fw") else None,
                )
            )
        return out

    def request(self) -> None:
        """Ask the app to read the switches' session flows (at its next poll tick): it
        reads them only when asked (`poll_request_file`, this file's name with .request,
        whose content changes with every request)."""
        self.path.with_suffix(".request").write_text(secrets.token_hex(8))

    def _written(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def wait_for(self, sessions: set[tuple[str, int]], timeout: float = 5) -> dict[tuple[str, int], Session]:
        """The table once it lists both directions of every (client, port) in `sessions`,
        read after this call; asks again after each read that still lacks some."""
        last = self._written()
        self.request()

        def table() -> dict[tuple[str, int], Session] | None:
            nonlocal last
            written = self._written()
            if written == last:
                return None  # not read since the request
            rows = {(s.src, s.sport or 0): s for s in self.sessions() if (s.src, s.sport) in sessions}
            complete = [s for s in rows.values() if s.via and s.reply_via]
            if len(complete) >= len(sessions):
                return rows
            last = written
            self.request()
            return None

        return wait_until(table, timeout, f"the controller's table to list {len(sessions)} sessions")
