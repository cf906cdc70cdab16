"""The firewall node: a Linux router holding two devices, its nftables firewall
(`lab.devices.nft_firewall`: the policy, its agents and handoff routing) and, in a
redundant pair, conntrackd (`lab.devices.conntrackd`) syncing sessions to the peer, with
its option to defer each new session's SYN and SYN-ACK (`lab.devices.sync_defer`).

The methods cases call (`apply_policy`, `sessions`, `counters`, `start_sync`, ...) are the
node's and go to the device that does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mininet.node import Node

from lab.config import FirewallPolicy
from lab.devices.base import DeviceHolder, Runner, SessionDevice, register
from lab.devices.conntrackd import ConntrackSync
from lab.devices.nft_firewall import FirewallPorts, NftFirewall
from lab.devices.sync_defer import Deferral, DeferSettings, install_hold
from lab.errors import ConfigError
from lab.render.conntrackd import SyncSettings

if TYPE_CHECKING:
    from lab import conntrack
    from lab.procs import Proc


@register("firewall")
class Firewall(DeviceHolder, Node):
    """A stateful firewall between an `inside` and an `outside` interface.

    Topology parameters: `inside`, `outside`; optionally `sync`, its interface on the
    FW1-FW2 link, `peer`, the peer firewall's address on that link, and `tunnel`, this
    firewall's address inside the VXLAN tunnel to the peer (prefix included).
    """

    holder_kind = "firewall"
    config_scope = "lab"
    # Its devices, made by lab_start.
    firewall: NftFirewall | None = None
    syncer: ConntrackSync | None = None
    deferral: Deferral | None = None

    def config(  # noqa: N802
        self,
        inside: str = "fw-in",
        outside: str = "fw-out",
        sync: str | None = None,
        peer: str | None = None,
        tunnel: str | None = None,
        **params: Any,
    ) -> Any:
        result = super().config(**params)
        self.inside = inside
        self.outside = outside
        self.sync = sync  # the interface to a peer firewall: session sync and handoff
        self.peer = peer
        self.tunnel = tunnel
        return result

    def lab_start(self, runner: Runner) -> None:
        """Called by the Lab once the network is up: its devices, the default policy."""
        self._attach(runner, [self.inside, self.outside, self.sync])
        sync_address = self.intf(self.sync).IP() if self.sync is not None else None
        ports = FirewallPorts(self.inside, self.outside, self.sync, sync_address, self.peer, self.tunnel)
        self.firewall = NftFirewall(runner, self.name, ports)
        self.syncer = ConntrackSync(runner, self.name, f"{self.name}-conntrackd")
        if self.sync is not None and self.peer is not None:
            # Before the first ruleset brings conntrack's hooks (lab.devices.sync_defer).
            self.deferral = Deferral(runner, self.name, install_hold(runner, self.name))
        self.apply_policy(FirewallPolicy())

    def devices(self) -> list[SessionDevice]:
        return [d for d in (self.firewall, self.syncer) if d is not None]

    def _firewall(self) -> NftFirewall:
        return self._started(self.firewall)

    # --- the firewall device ----------------------------------------------------------
    def apply_policy(self, policy: FirewallPolicy) -> Path:
        """Render, check (`nft -c`) and load a policy atomically; returns the ruleset file."""
        return self._firewall().configure(policy)

    def apply_stateless(self, policy: FirewallPolicy) -> Path:
        """The same intent as a stateless filter (see `NftFirewall.configure_stateless`)."""
        return self._firewall().configure_stateless(policy)

    @property
    def policy(self) -> FirewallPolicy | None:
        return self.firewall.policy if self.firewall is not None else None

    @property
    def agents(self) -> dict[str, Proc]:
        """The policy's agents by module (expiry_reset, early_drop)."""
        return self.firewall.agents if self.firewall is not None else {}

    def sessions(self) -> list[conntrack.Session]:
        """The session table now (with per-direction packet counts)."""
        return self._firewall().sessions()

    def flush_sessions(self) -> None:
        self._firewall().flush_sessions()

    def reset(self) -> None:
        """A case starts clean: no sessions, counters at zero (the policy stands)."""
        for device in self.devices():
            device.reset()

    def counters(self) -> dict[str, int]:
        """Packets counted so far by the policy's named counters (drops by reason, handoffs)."""
        return self._firewall().counters()

    def drops(self) -> int:
        """Packets dropped so far, every reason."""
        return self._firewall().drops()

    # --- session sync (conntrackd) ------------------------------------------------------
    def start_sync(
        self, external_cache: bool = False, defer: bool = False, defer_timeout: float = 0.9
    ) -> Proc:
        """Run conntrackd (FTFW over the sync interface to `peer`) in the foreground; with
        `defer`, hold each new session's SYN (and a SYN-ACK whose SYN crossed the peer)
        until the peer holds its entry (and has seen that reply), at most `defer_timeout` s."""
        self._runner()
        if self.sync is None or self.peer is None:
            raise ConfigError(f"firewall {self.name}: session sync needs `sync` and `peer` in the topology")
        if defer and external_cache:
            raise ConfigError(
                f"firewall {self.name}: defer waits for the peer's kernel entry, "
                "which conntrackd's external cache never writes"
            )
        self.stop_sync()
        local = self.intf(self.sync).IP()
        settings = SyncSettings(local, self.peer, self.sync, external_cache=external_cache)
        proc = self._started(self.syncer).configure(settings)
        if defer:
            interfaces = (self.inside, self.outside)
            self._started(self.deferral).start(DeferSettings(local, self.peer, interfaces, defer_timeout))
        return proc

    def stop_sync(self) -> None:
        if self.deferral is not None:
            self.deferral.stop()
        if self.syncer is not None:
            self.syncer.stop()

    @property
    def syncd(self) -> Proc | None:
        """conntrackd's process while it runs (None before `start_sync`, after `stop_sync`)."""
        return self.syncer.proc if self.syncer is not None else None
