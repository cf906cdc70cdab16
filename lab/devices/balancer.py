"""The balancer node: a Linux router between a client side and a server side, holding up
to five devices, one role each:

- the kernel L4 balancer (`lab.devices.l4`): the VIP DNATed or DSR-forwarded by nftables;
- an L7 balancer, haproxy or nginx (`lab.devices.adc`), on the VIP;
- keepalived (`lab.devices.keepalived`) moving the VIP within a redundant pair;
- conntrackd (`lab.devices.conntrackd`) syncing sessions to the peer balancer;
- the health-check agent (`lab.devices.health_agent`) that takes servers out and back.

The methods cases call (`apply`, `start_adc`, `start_vrrp`, `start_sync`, `start_health`,
`sessions`, `reset`, ...) are the node's and go to the device that does the work. Each
case configures the balancer it needs: `reset` removes what the last case configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mininet.node import Node

from lab.config import Adc, HealthCheck, L4Balancer, VrrpInstance
from lab.config.balancing import family
from lab.devices.adc import AdcDaemon
from lab.devices.base import DeviceHolder, Runner, SessionDevice, register
from lab.devices.conntrackd import ConntrackSync
from lab.devices.health_agent import HealthAgent, HealthAgentConfig
from lab.devices.keepalived import Keepalived
from lab.devices.l4 import BalancerPorts, KernelBalancer
from lab.errors import LabError
from lab.render.balancer import DsrPorts
from lab.render.conntrackd import SyncSettings

if TYPE_CHECKING:
    from lab import conntrack
    from lab.procs import Proc


@register("balancer")
class Balancer(DeviceHolder, Node):
    """A balancer between a `client_side` and a `server_side` interface."""

    holder_kind = "balancer"
    # Its devices: made by lab_start (the first three) or by the case (ADC, keepalived).
    l4: KernelBalancer | None = None
    syncer: ConntrackSync | None = None
    checker_agent: HealthAgent | None = None
    adc: AdcDaemon | None = None
    vrrp: Keepalived | None = None

    def config(  # noqa: N802
        self, client_side: str = "lb-c", server_side: str = "lb-s", **params: Any
    ) -> Any:
        result = super().config(**params)
        self.client_side = client_side
        self.server_side = server_side
        return result

    def lab_start(self, runner: Runner) -> None:
        """Called by the Lab once the network is up: its standing devices (none configured)."""
        self._attach(runner, [self.client_side, self.server_side])
        ports = BalancerPorts(self.client_side, self.server_side, self.intf(self.server_side).MAC())
        self.l4 = KernelBalancer(runner, self.name, ports)
        self.syncer = ConntrackSync(runner, self.name, f"{self.name}-conntrackd", liberal=True)
        self.checker_agent = HealthAgent(runner, self.name, f"{self.name}-health")

    def devices(self) -> list[SessionDevice]:
        """Its standing devices, and the ADC and keepalived while they run."""
        standing = [d for d in (self.l4, self.syncer, self.checker_agent) if d is not None]
        running = [d for d in (self.adc, self.vrrp) if d is not None and d.running()]
        return [*standing, *running]

    def _l4(self) -> KernelBalancer:
        return self._started(self.l4)

    # --- the kernel L4 balancer -----------------------------------------------------------
    def dsr_ports(self, config: L4Balancer) -> DsrPorts:
        """The interfaces and MACs direct server return needs (servers' MACs by ARP)."""
        return self._l4().dsr_ports(config)

    def apply(self, config: L4Balancer, own_vip: bool = True) -> Path:
        """Validate, render, check (`nft -c`) and load a balancer; the VIP goes on the
        client side (unless VRRP moves it: `own_vip` off)."""
        return self._l4().configure(config, own_vip)

    @property
    def balancer(self) -> L4Balancer | None:
        """The L4 balancer applied in this case, if any."""
        return self.l4.config if self.l4 is not None else None

    def add_vip(self, vip: str) -> None:
        """The VIP on the client side (removed again at the next case)."""
        self._l4().add_vip(vip)

    def sessions(self) -> list[conntrack.Session]:
        return self._l4().sessions()

    def reset(self) -> None:
        """A case starts clean: no balancer tables, no VIP, no sessions, strict windows;
        the ADC and keepalived of the last case ended with it, and what they set on the
        node goes too (the ADC's source ports, the addresses a killed keepalived left)."""
        for device in self.devices():
            device.reset()
        for ended in (self.adc, self.vrrp):
            if ended is not None:
                ended.stop()
        self.adc, self.vrrp = None, None

    # --- the L7 balancer, VRRP, session sync ------------------------------------------------
    def start_adc(self, adc: Adc, daemon: str, ports: range, own_vip: bool = True) -> AdcDaemon:
        """Run an L7 balancer (haproxy or nginx) on this node for `adc`, its connections
        to the servers from `ports`; it ends with the case. Without `own_vip` (VRRP moves
        the VIP) the daemon binds the VIP before the node has it (ip_nonlocal_bind)."""
        runner = self._runner()
        if own_vip:
            self.add_vip(adc.vip)
        ip = "ipv6" if family(adc.vip) == 6 else "ipv4"
        runner.run(self.name, ["sysctl", "-qw", f"net.{ip}.ip_nonlocal_bind={0 if own_vip else 1}"])
        self.adc = AdcDaemon(runner, self.name, adc, daemon, f"{self.name}-{daemon}", ports)
        return self.adc.start()

    def start_vrrp(self, instances: Sequence[VrrpInstance]) -> Keepalived:
        """keepalived on this node (a sync group when several instances); ends with the case."""
        self.vrrp = Keepalived(self._runner(), self.name, instances, f"{self.name}-keepalived")
        return self.vrrp.start()

    def start_sync(self, peer: str) -> Proc:
        """conntrackd (FTFW) to the peer balancer over the server side: the standby learns
        every session with its NAT binding, straight into its kernel table."""
        local = self.intf(self.server_side).IP()
        return self._started(self.syncer).configure(
            SyncSettings(local=local, peer=peer, interface=self.server_side)
        )

    # --- health checks ------------------------------------------------------------------
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
        l4 = self._l4()
        target = servers or l4.config
        if target is None:
            raise LabError(f"balancer {self.name}: apply a balancer before its health checks")
        dsr = l4.dsr if service_file is None else None
        config = HealthAgentConfig(check, ports, target, self.server_side, dsr, service_file)
        return self._started(self.checker_agent).configure(config)

    @property
    def health(self) -> Proc | None:
        """The health-check agent's process in this case, if any."""
        return self.checker_agent.proc if self.checker_agent is not None else None

    def health_events(self) -> list[dict[str, Any]]:
        """The health-check agent's events (ready, down, up), in order."""
        return self.checker_agent.events() if self.checker_agent is not None else []
