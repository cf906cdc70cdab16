"""The balancer node. As a kernel L4 balancer: a Linux router whose VIP is DNATed (or, in DSR mode, MAC-
forwarded) to real servers by an nftables ruleset, with optional health checks.

Lifecycle: L4Balancer -> render (`lab/render/balancer.py`) -> `nft -c` -> `nft -f` (return
code checked) -> the VIP on the client side -> session table from conntrack. Health
checks run as an owned agent (`lab.agents.health_check`) that reloads the ruleset when a
server goes down or comes back. `reset` (between cases) removes the balancer's tables, the
VIP and every session: each case configures the balancer it needs. As an L7 balancer it
runs haproxy or nginx (`lab.devices.adc`) on the VIP.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mininet.node import Node

from lab import conntrack
from lab.config import Adc, HealthCheck, L4Balancer, VrrpInstance, balancer_problems
from lab.devices.adc import AdcDaemon
from lab.devices.base import register
from lab.devices.redundancy import Keepalived, start_conntrackd
from lab.errors import CommandError, ConfigError, LabError
from lab.render.balancer import DsrPorts, render_balancer, render_clear
from lab.render.conntrackd import SyncSettings
from lab.traffic import server_events

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

log = logging.getLogger(__name__)


@register("balancer")
class Balancer(Node):
    """A balancer between a `client_side` and a `server_side` interface."""

    def config(  # noqa: N802
        self, client_side: str = "lb-c", server_side: str = "lb-s", **params: Any
    ) -> Any:
        result = super().config(**params)
        self.client_side = client_side
        self.server_side = server_side
        self.lab: Lab | None = None
        self.balancer: L4Balancer | None = None
        self.health: Proc | None = None
        self._dsr: DsrPorts | None = None
        self.vips: set[str] = set()
        self.loads = 0
        return result

    def lab_start(self, lab: Lab) -> None:
        self.lab = lab
        names = {i.name for i in self.intfList()}
        missing = [n for n in (self.client_side, self.server_side) if n not in names]
        if missing:
            raise ConfigError(
                f"balancer {self.name}: no interface {', '.join(missing)} (has {', '.join(sorted(names))})"
            )

    def _lab(self) -> Lab:
        if self.lab is None:
            raise LabError(f"balancer {self.name} is not part of a running lab")
        return self.lab

    def dsr_ports(self, config: L4Balancer) -> DsrPorts:
        """The interfaces and MACs direct server return needs (servers' MACs by ARP)."""
        lab = self._lab()
        macs = {}
        for server in config.servers:
            lab.run(self.name, ["ping", "-c", "1", "-W", "1", server.address], check=False)
            out = lab.run(self.name, ["ip", "neigh", "show", server.address, "dev", self.server_side])
            words = out.split()
            if "lladdr" in words:
                macs[server.address] = words[words.index("lladdr") + 1]
        return DsrPorts(self.client_side, self.server_side, self.intf(self.server_side).MAC(), macs)

    def apply(self, config: L4Balancer, own_vip: bool = True) -> Path:
        """Render, check (`nft -c`) and load a balancer; the VIP goes on the client side
        (unless VRRP moves it: `own_vip` off)."""
        lab = self._lab()
        problems = balancer_problems(config)
        if problems:
            raise ConfigError([f"balancer {self.name}: {p}" for p in problems])
        dsr = self.dsr_ports(config) if config.mode == "dsr" else None
        self.loads += 1
        path = lab.paths.root / f"{self.name}-balancer-{self.loads}.nft"
        path.write_text(render_balancer(config, self.server_side, dsr))
        try:
            lab.run(self.name, ["nft", "-c", "-f", str(path)])
        except CommandError as exc:
            raise ConfigError(f"balancer {self.name}: nft rejects {path}: {exc.output}") from None
        # Strict tracking: a mid-stream packet of a session this balancer does not know
        # (one a failed peer balanced) must not start a new NAT binding to a server the
        # round robin picks; it is invalid, and the balancer's own stack resets it.
        lab.run(self.name, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
        lab.run(self.name, ["nft", "-f", str(path)])
        if own_vip:
            self.add_vip(config.vip)
        self.balancer = config
        self._dsr = dsr
        return path

    def add_vip(self, vip: str) -> None:
        """The VIP on the client side (removed again at the next case)."""
        self._lab().run(self.name, ["ip", "addr", "replace", f"{vip}/32", "dev", self.client_side])
        self.vips.add(vip)

    def start_adc(self, adc: Adc, daemon: str, ports: range, own_vip: bool = True) -> AdcDaemon:
        """Run an L7 balancer (haproxy or nginx) on this node for `adc`, its connections
        to the servers from `ports`; it ends with the case. Without `own_vip` (VRRP moves
        the VIP) the daemon binds the VIP before the node has it (ip_nonlocal_bind)."""
        if own_vip:
            self.add_vip(adc.vip)
        self._lab().run(self.name, ["sysctl", "-qw", f"net.ipv4.ip_nonlocal_bind={0 if own_vip else 1}"])
        return AdcDaemon(self._lab(), self.name, adc, daemon, f"{self.name}-{daemon}", ports).start()

    def start_vrrp(self, instances: Sequence[VrrpInstance]) -> Keepalived:
        """keepalived on this node (a sync group when several instances); ends with the case."""
        return Keepalived(self._lab(), self.name, instances, f"{self.name}-keepalived").start()

    def start_sync(self, peer: str) -> Proc:
        """conntrackd (FTFW) to the peer balancer over the server side: the standby learns
        every session with its NAT binding, straight into its kernel table."""
        local = self.intf(self.server_side).IP()
        settings = SyncSettings(local=local, peer=peer, interface=self.server_side)
        # conntrackd copies a session's state, not the windows conntrack has seen: the
        # standby would find the next segments out of window. (As S2's liberal_windows.)
        self._lab().run(self.name, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_be_liberal=1"])
        return start_conntrackd(self._lab(), self.name, settings, f"{self.name}-conntrackd")

    def start_health(
        self,
        check: HealthCheck,
        ports: range,
        servers: L4Balancer | None = None,
        service_file: str | None = None,
    ) -> Proc:
        """Health-check the applied balancer's servers (or, with `service_file`, those of
        `servers` for a balancer elsewhere: a controller that follows that file) from
        source ports `ports` (the case's); the agent is the case's and ends with it."""
        lab = self._lab()
        target = servers or self.balancer
        if target is None:
            raise LabError(f"balancer {self.name}: apply a balancer before its health checks")
        config = {
            "balancer": asdict(target),
            "check": asdict(check),
            "server_side": self.server_side,
            "dsr": asdict(self._dsr) if self._dsr is not None and service_file is None else None,
            "service_file": service_file,
        }
        argv = [sys.executable, "-m", "lab.agents.health_check", "--config", json.dumps(config)]
        argv += ["--first-port", str(ports.start), "--ports", str(len(ports))]
        timeout = 5 + check.interval_ms / 1000 * 2
        self.health = lab.start(
            self.name, argv, f"{self.name}-health", ready='"event": "ready"', ready_timeout=timeout
        )
        return self.health

    def health_events(self) -> list[dict[str, Any]]:
        """The health-check agent's events (ready, down, up), in order."""
        return server_events(self.health) if self.health is not None else []

    # --- the session table ----------------------------------------------------------
    def sessions(self) -> list[conntrack.Session]:
        return conntrack.parse_table(self._lab().run(self.name, ["conntrack", "-L"], merge=False))

    def reset(self) -> None:
        """A case starts clean: no balancer tables, no VIP, no sessions."""
        lab = self._lab()
        clear = lab.paths.root / f"{self.name}-clear.nft"
        clear.write_text(render_clear())
        lab.run(self.name, ["nft", "-f", str(clear)])
        for vip in self.vips:
            lab.run(self.name, ["ip", "addr", "del", f"{vip}/32", "dev", self.client_side], check=False)
        self.vips.clear()
        self.balancer, self._dsr, self.health = None, None, None
        lab.run(self.name, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_be_liberal=0"])
        lab.run(self.name, ["conntrack", "-F"], check=False)
