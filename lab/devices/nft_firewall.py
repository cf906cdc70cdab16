"""The stateful firewall device: a Linux router whose forwarding is an nftables policy.

Lifecycle (`lab.devices.base`): FirewallPolicy -> `policy.problems()` -> render
(`lab/render/nftables.py`) -> `nft -c` -> sysctls, then `nft -f` (return code checked: on
an error nft silently keeps the old ruleset) -> ready when it returns -> session table
from conntrack. Part of its policy, and so of this device: the agents a policy asks for
(reset at expiry, early drop) and the routing that hands packets of unknown sessions to
the peer firewall. Its policy stands between cases (`config_scope` "lab").
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from lab import conntrack
from lab.config import FirewallPolicy, refuse
from lab.config.checks import to_toml
from lab.devices.base import Device, Runner, daemon
from lab.errors import ConfigError
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
    from lab.procs import Proc

HANDOFF_TABLE = 94  # the routing table of handed-off packets
VXLAN_DEV, VXLAN_ID, VXLAN_PORT = "fwvx", 42, 4789


@dataclass(frozen=True)
class FirewallPorts:
    """The firewall's interfaces: `inside`, `outside`; optionally `sync`, its interface on
    the FW1-FW2 link (with `sync_address`, its address there), `peer`, the peer's address
    on that link, and `tunnel`, its address inside the VXLAN tunnel to the peer."""

    inside: str
    outside: str
    sync: str | None = None
    sync_address: str | None = None
    peer: str | None = None
    tunnel: str | None = None


class NftFirewall(Device):
    """The nftables firewall of node `node` (named as the node: "firewall fw1: ...")."""

    def __init__(self, runner: Runner, node: str, ports: FirewallPorts, built_by_lab: bool = True):
        super().__init__(runner, node, node, built_by_lab)
        self.ports = ports
        self.policy: FirewallPolicy | None = None
        self.agents: dict[str, Proc] = {}  # agent module -> its process (one of each)
        self.policy_loads = 0
        self.handoff = "off"

    keeps_sessions: ClassVar[bool] = True
    config_scope: ClassVar[Literal["lab", "case"]] = "lab"
    checker: ClassVar[str] = "nft -c -f <ruleset>"
    ready_on: ClassVar[str] = "nft -f returns 0 (atomic: the ruleset is in place)"

    def configure(self, policy: FirewallPolicy) -> Path:
        """Validate, render, check (`nft -c`) and load a policy atomically, with the agents
        and handoff routing it asks for; returns the ruleset file."""
        self._configurable()
        refuse(policy.problems())
        link = self._handoff_link(policy.peer_handoff)
        path = self._next_file("ruleset")
        path.write_text(render_ruleset(policy, self.ports.inside, self.ports.outside, link))
        # What was applied, as a file `topo --policy NODE=FILE` takes: redone by hand.
        path.with_suffix(".toml").write_text(
            to_toml(
                policy, f"{self.node}'s policy of {path.name}; by hand: topo ... --policy {self.node}=FILE"
            )
        )
        self.check(path)
        settings = [f"{key}={value}" for key, value in render_sysctls(policy).items()]
        self.runner.run(self.node, ["sysctl", "-qw", *settings])  # one process: fails if any does
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

    def configure_stateless(self, policy: FirewallPolicy) -> Path:
        """The same intent as `policy` as a stateless filter (a router's ACL pair, nothing
        tracked: `render_stateless`), checked and loaded like a policy; its agents stop."""
        self._configurable()
        refuse(policy.problems())
        path = self._next_file("stateless")
        path.write_text(render_stateless(policy, self.ports.inside, self.ports.outside))
        self.check(path)
        self._load(path)
        self._set_handoff("off")
        self.policy = None
        self._set_agent("expiry_reset", None)
        self._set_agent("early_drop", None)
        return path

    def _next_file(self, kind: str) -> Path:
        self.policy_loads += 1
        return self.runner.paths.root / f"{self.node}-{kind}-{self.policy_loads}.nft"

    def check(self, path: Path) -> None:
        """nft's own check of a rendered ruleset (`nft -c`), refused in nft's words."""
        refused = f"firewall {self.name}: nft rejects the rendered policy {path}: "
        self._run_check(["nft", "-c", "-f", str(path)], lambda out: refused + out)

    def _load(self, path: Path) -> None:
        # nft -f is atomic: on an error the old ruleset silently stays, so the code matters.
        self.runner.run(self.node, ["nft", "-f", str(path)])

    # --- handing packets of unknown sessions to the peer ----------------------------
    def _handoff_link(self, mode: str) -> str | None:
        if mode == "off":
            return None
        if self.ports.sync is None or self.ports.peer is None:
            raise ConfigError(f"firewall {self.name}: peer_handoff needs `sync` and `peer` in the topology")
        if mode == "vxlan" and self.ports.tunnel is None:
            raise ConfigError(f"firewall {self.name}: peer_handoff vxlan needs `tunnel` in the topology")
        return VXLAN_DEV if mode == "vxlan" else self.ports.sync

    def _set_handoff(self, mode: str) -> None:
        """Routing for marked packets: to the peer's link address (the frame's destination
        MAC becomes the peer's), or into a VXLAN tunnel to the peer (Ethernet in UDP)."""
        if mode == self.handoff:
            return
        node, run = self.node, self.runner.run
        run(node, ["ip", "rule", "del", "fwmark", hex(HANDOFF_MARK)], check=False)
        run(node, ["ip", "route", "flush", "table", str(HANDOFF_TABLE)], check=False)
        run(node, ["ip", "link", "del", VXLAN_DEV], check=False)
        self.handoff = "off"
        if mode == "off":
            return
        sync, peer, tunnel = self.ports.sync, self.ports.peer, self.ports.tunnel
        assert sync is not None and peer is not None
        via, dev = peer, sync
        table = ["table", str(HANDOFF_TABLE)]
        if mode == "vxlan":
            assert tunnel is not None and self.ports.sync_address is not None
            run(
                node,
                ["ip", "link", "add", VXLAN_DEV, "type", "vxlan", "id", str(VXLAN_ID)]
                + ["local", self.ports.sync_address, "remote", peer, "dstport", str(VXLAN_PORT), "dev", sync],
            )
            run(node, ["ip", "addr", "add", tunnel, "dev", VXLAN_DEV])
            run(node, ["ip", "link", "set", VXLAN_DEV, "up"])
            net = ipaddress.ip_interface(tunnel).network
            mine = ipaddress.ip_interface(tunnel).ip
            via, dev = str(next(h for h in net.hosts() if h != mine)), VXLAN_DEV
            # The encapsulated packet keeps the mark, so its own route lookup meets this
            # table too: the peer's link address must resolve here, not into the tunnel.
            run(node, ["ip", "route", "replace", peer, "dev", sync, *table])
        run(node, ["ip", "route", "replace", "default", "via", via, "dev", dev, *table])
        run(node, ["ip", "rule", "add", "fwmark", hex(HANDOFF_MARK), *table])
        self.handoff = mode

    # --- the policy's agents (owned processes) ----------------------------------------
    def _set_agent(self, module: str, args: list[str] | None) -> None:
        """Run `lab.agents.<module>` with `args`, or none (None): one of each at a time,
        started again when its arguments change or when it ended with its case."""
        argv = None if args is None else [sys.executable, "-m", f"lab.agents.{module}", *args]
        running = self.agents.get(module)
        if running is not None and (running.stopped or running.argv != argv):
            self.runner.stop(running)
            del self.agents[module]
        if argv is not None and module not in self.agents:
            name = f"{self.node}-{module.replace('_', '-')}"
            self.agents[module] = daemon(self.runner.start(self.node, argv, name, ready=r'"event": "ready"'))

    # --- the session table ----------------------------------------------------------
    def sessions(self) -> list[conntrack.Session]:
        """The session table now (with per-direction packet counts)."""
        return conntrack.parse_table(self.runner.run(self.node, ["conntrack", "-L"], merge=False))

    def flush_sessions(self) -> None:
        self.runner.run(self.node, ["conntrack", "-F"])

    def reset(self) -> None:
        """A case starts clean: no sessions, counters at zero; the policy stands."""
        self.flush_sessions()
        self.runner.run(self.node, ["nft", "reset", "counters", "table", "inet", TABLE])

    def stop(self) -> None:
        """End the policy's agents and remove the handoff routing (the ruleset stays: the
        node is a router, and a firewall without a policy would forward everything)."""
        for module in list(self.agents):
            self._set_agent(module, None)
        self._set_handoff("off")

    def counters(self) -> dict[str, int]:
        """Packets counted so far by the policy's named counters (drops by reason, handoffs)."""
        out = self.runner.run(self.node, ["nft", "-j", "list", "counters", "table", "inet", TABLE])
        counts = {}
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = int(item["counter"]["packets"])
        return counts

    def drops(self) -> int:
        """Packets dropped so far, every reason."""
        counts = self.counters()
        return sum(counts.get(name, 0) for name in DROP_COUNTERS)
