"""The stateful firewall: a Linux router whose forwarding is an nftables policy.

Lifecycle: policy -> render (`lab/render/nftables.py`) -> `nft -c` -> `nft -f` (return code
checked: on an error nft silently keeps the old ruleset) -> session table from conntrack.
Optional owned processes: the reset-at-expiry agent, conntrackd (session sync), and the
routing for handing packets of unknown sessions to the peer firewall.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mininet.node import Node

from lab import conntrack
from lab.config import FirewallPolicy, validate_policy
from lab.devices.base import register
from lab.errors import CommandError, ConfigError, LabError
from lab.render.nftables import (
    AGENT_MARK,
    DROP_COUNTERS,
    HANDOFF_MARK,
    TABLE,
    render_ruleset,
    render_stateless,
    render_sysctls,
)

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

log = logging.getLogger(__name__)

HANDOFF_TABLE = 94  # the routing table of handed-off packets
VXLAN_DEV, VXLAN_ID, VXLAN_PORT = "fwvx", 42, 4789


@register("firewall")
class Firewall(Node):
    """A stateful firewall between an `inside` and an `outside` interface.

    Topology parameters: `inside`, `outside`; optionally `sync`, its interface on the
    FW1-FW2 link, `peer`, the peer firewall's address on that link, and `tunnel`, this
    firewall's address inside the VXLAN tunnel to the peer (prefix included).
    """

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
        self.policy: FirewallPolicy | None = None
        self.lab: Lab | None = None
        self.agents: dict[str, Proc] = {}  # agent module -> its process (one of each)
        self.policy_loads = 0
        self.syncd: Proc | None = None
        self.handoff = "off"
        return result

    def lab_start(self, lab: Lab) -> None:
        """Called by the Lab once the network is up: load the default policy."""
        self.lab = lab
        names = {i.name for i in self.intfList()}
        wanted = [n for n in (self.inside, self.outside, self.sync) if n is not None]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ConfigError(
                f"firewall {self.name}: no interface {', '.join(missing)} (has {', '.join(sorted(names))})"
            )
        self.apply_policy(FirewallPolicy())

    def _lab(self) -> Lab:
        if self.lab is None:
            raise LabError(f"firewall {self.name} is not part of a running lab")
        return self.lab

    def apply_policy(self, policy: FirewallPolicy) -> Path:
        """Render, check (`nft -c`) and load a policy atomically; returns the ruleset file."""
        lab = self._lab()
        validate_policy(policy)
        link = self._handoff_link(policy.peer_handoff)
        self.policy_loads += 1
        path = lab.paths.root / f"{self.name}-ruleset-{self.policy_loads}.nft"
        path.write_text(render_ruleset(policy, self.inside, self.outside, link))
        self._check(path)
        settings = [f"{key}={value}" for key, value in render_sysctls(policy).items()]
        lab.run(self.name, ["sysctl", "-qw", *settings])  # one process: fails if any does
        self._set_handoff(policy.peer_handoff)
        self._load(path)
        self.policy = policy
        reset_argv = ["--mark", str(AGENT_MARK)] if policy.reset_on_expiry else None
        self._set_agent("expiry_reset", reset_argv)
        # Early drop makes room at 3/4 of the capacity: what a flood fills between two
        # reads of the table must still fit (lab/agents/early_drop.py).
        high = policy.max_sessions * 3 // 4 if policy.early_drop and policy.max_sessions else None
        self._set_agent("early_drop", ["--high", str(high)] if high else None)
        return path

    def apply_stateless(self, policy: FirewallPolicy) -> Path:
        """The same intent as `policy` as a stateless filter (a router's ACL pair, nothing
        tracked: `render_stateless`), checked and loaded like a policy; its agents stop."""
        lab = self._lab()
        validate_policy(policy)
        self.policy_loads += 1
        path = lab.paths.root / f"{self.name}-stateless-{self.policy_loads}.nft"
        path.write_text(render_stateless(policy, self.inside, self.outside))
        self._check(path)
        self._load(path)
        self._set_handoff("off")
        self.policy = None
        self._set_agent("expiry_reset", None)
        self._set_agent("early_drop", None)
        return path

    def _check(self, path: Path) -> None:
        try:
            self._lab().run(self.name, ["nft", "-c", "-f", str(path)])
        except CommandError as exc:
            raise ConfigError(
                f"firewall {self.name}: nft rejects the rendered policy {path}: {exc.output}"
            ) from None

    def _load(self, path: Path) -> None:
        # nft -f is atomic: on an error the old ruleset silently stays, so the code matters.
        self._lab().run(self.name, ["nft", "-f", str(path)])

    # --- handing packets of unknown sessions to the peer ----------------------------
    def _handoff_link(self, mode: str) -> str | None:
        if mode == "off":
            return None
        if self.sync is None or self.peer is None:
            raise ConfigError(f"firewall {self.name}: peer_handoff needs `sync` and `peer` in the topology")
        if mode == "vxlan" and self.tunnel is None:
            raise ConfigError(f"firewall {self.name}: peer_handoff vxlan needs `tunnel` in the topology")
        return VXLAN_DEV if mode == "vxlan" else self.sync

    def _set_handoff(self, mode: str) -> None:
        """Routing for marked packets: to the peer's link address (the frame's destination
        MAC becomes the peer's), or into a VXLAN tunnel to the peer (Ethernet in UDP)."""
        if mode == self.handoff:
            return
        lab = self._lab()
        run = lab.run
        run(self.name, ["ip", "rule", "del", "fwmark", hex(HANDOFF_MARK)], check=False)
        run(self.name, ["ip", "route", "flush", "table", str(HANDOFF_TABLE)], check=False)
        run(self.name, ["ip", "link", "del", VXLAN_DEV], check=False)
        self.handoff = "off"
        if mode == "off":
            return
        assert self.sync is not None and self.peer is not None
        via, dev = self.peer, self.sync
        table = ["table", str(HANDOFF_TABLE)]
        if mode == "vxlan":
            assert self.tunnel is not None
            local = self.intf(self.sync).IP()
            run(
                self.name,
                ["ip", "link", "add", VXLAN_DEV, "type", "vxlan", "id", str(VXLAN_ID)]
                + ["local", local, "remote", self.peer, "dstport", str(VXLAN_PORT), "dev", self.sync],
            )
            run(self.name, ["ip", "addr", "add", self.tunnel, "dev", VXLAN_DEV])
            run(self.name, ["ip", "link", "set", VXLAN_DEV, "up"])
            net = ipaddress.ip_interface(self.tunnel).network
            mine = ipaddress.ip_interface(self.tunnel).ip
            via, dev = str(next(h for h in net.hosts() if h != mine)), VXLAN_DEV
            # The encapsulated packet keeps the mark, so its own route lookup meets this
            # table too: the peer's link address must resolve here, not into the tunnel.
            run(self.name, ["ip", "route", "replace", self.peer, "dev", self.sync, *table])
        run(self.name, ["ip", "route", "replace", "default", "via", via, "dev", dev, *table])
        run(self.name, ["ip", "rule", "add", "fwmark", hex(HANDOFF_MARK), *table])
        self.handoff = mode

    # --- owned processes ------------------------------------------------------------
    def _set_agent(self, module: str, args: list[str] | None) -> None:
        """Run `lab.agents.<module>` with `args`, or none (None): one of each at a time,
        started again when its arguments change or when it ended with its case."""
        lab = self._lab()
        argv = None if args is None else [sys.executable, "-m", f"lab.agents.{module}", *args]
        running = self.agents.get(module)
        if running is not None and (running.stopped or running.argv != argv):
            lab.stop(running)
            del self.agents[module]
        if argv is not None and module not in self.agents:
            name = f"{self.name}-{module.replace('_', '-')}"
            self.agents[module] = lab.start(self.name, argv, name, ready=r'"event": "ready"')

    def start_sync(self, external_cache: bool = False) -> Proc:
        """Run conntrackd (FTFW over the sync interface to `peer`) in the foreground."""
        from lab.devices.redundancy import start_conntrackd
        from lab.render.conntrackd import SyncSettings

        lab = self._lab()
        if self.sync is None or self.peer is None:
            raise ConfigError(f"firewall {self.name}: session sync needs `sync` and `peer` in the topology")
        self.stop_sync()
        settings = SyncSettings(
            local=self.intf(self.sync).IP(),
            peer=self.peer,
            interface=self.sync,
            external_cache=external_cache,
        )
        self.syncd = start_conntrackd(lab, self.name, settings, f"{self.name}-conntrackd")
        return self.syncd

    def stop_sync(self) -> None:
        if self.syncd is not None:
            self._lab().stop(self.syncd)
            self.syncd = None

    # --- the session table ----------------------------------------------------------
    def sessions(self) -> list[conntrack.Session]:
        """The session table now (with per-direction packet counts)."""
        return conntrack.parse_table(self._lab().run(self.name, ["conntrack", "-L"], merge=False))

    def flush_sessions(self) -> None:
        self._lab().run(self.name, ["conntrack", "-F"])

    def reset(self) -> None:
        """A case starts clean: no sessions, counters at zero."""
        self.flush_sessions()
        self._lab().run(self.name, ["nft", "reset", "counters", "table", "inet", TABLE])

    def counters(self) -> dict[str, int]:
        """Packets counted so far by the policy's named counters (drops by reason, handoffs)."""
        out = self._lab().run(self.name, ["nft", "-j", "list", "counters", "table", "inet", TABLE])
        counts = {}
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = int(item["counter"]["packets"])
        return counts

    def drops(self) -> int:
        """Packets dropped so far, every reason."""
        counts = self.counters()
        return sum(counts.get(name, 0) for name in DROP_COUNTERS)
