"""The kernel L4 balancer device: a VIP DNATed (or, in DSR mode, MAC-forwarded) to real
servers by an nftables ruleset.

Lifecycle (`lab.devices.base`): L4Balancer -> `problems()` (with the node's ports: each
DSR server's MAC, learnt by ARP) -> render (`lab/render/balancer.py`) -> `nft -c` -> strict
tracking, `nft -f` (return code checked) -> ready when it returns -> the VIP on the
client side -> session table from conntrack (both families: `conntrack -L` lists IPv4
and IPv6 entries, `-F` flushes both). Each case configures the balancer it needs
(`config_scope` "case"): `reset` removes the balancer's tables, its VIPs and every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from lab import conntrack
from lab.config import L4Balancer, refuse
from lab.config.balancing import family
from lab.config.checks import to_toml
from lab.devices.base import Device, Runner
from lab.render.balancer import DsrPorts, render_balancer, render_clear


def l4_problems(config: L4Balancer, server_side: str | None, dsr: DsrPorts | None) -> list[str]:
    """Every problem with `config` on a node whose server side is `server_side` and whose
    DSR ports are `dsr`: the config's own, then what it needs of the node."""
    return config.problems() + node_problems(config, server_side, dsr)


def node_problems(config: L4Balancer, server_side: str | None, dsr: DsrPorts | None) -> list[str]:
    """What `config` needs of its node: the server side (to source-NAT), each DSR server's MAC."""
    problems: list[str] = []
    if config.snat and server_side is None:
        problems.append("balancer.snat: needs the interface towards the servers")
    if config.mode == "dsr":
        if dsr is None:
            problems.append("balancer.mode: dsr needs the node's interfaces and the servers' MACs")
        else:
            problems += dsr.problems(config)
    return problems


def _host_prefix(vip: str) -> str:
    """The VIP as one host's prefix: /32, or /128 for IPv6."""
    return f"{vip}/128" if family(vip) == 6 else f"{vip}/32"


@dataclass(frozen=True)
class BalancerPorts:
    """The balancer's interfaces: `client_side` (where its VIPs are), `server_side`
    (towards the real servers) and that side's MAC (DSR frames' new source)."""

    client_side: str
    server_side: str
    server_mac: str


class KernelBalancer(Device):
    """The L4 balancer of node `node` between its client side and its server side."""

    def __init__(self, runner: Runner, node: str, ports: BalancerPorts, built_by_lab: bool = True):
        super().__init__(runner, node, node, built_by_lab)
        self.ports = ports
        self.config: L4Balancer | None = None
        self.dsr: DsrPorts | None = None
        self.vips: set[str] = set()
        self.loads = 0

    keeps_sessions: ClassVar[bool] = True
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = "nft -c -f <ruleset>"
    ready_on: ClassVar[str] = "nft -f returns 0 (atomic: the ruleset is in place)"

    def dsr_ports(self, config: L4Balancer) -> DsrPorts:
        """The interfaces and MACs direct server return needs (servers' MACs by ARP)."""
        macs, ports = {}, self.ports
        for server in config.servers:
            self.runner.run(self.node, ["ping", "-c", "1", "-W", "1", server.address], check=False)
            out = self.runner.run(
                self.node, ["ip", "neigh", "show", server.address, "dev", ports.server_side]
            )
            words = out.split()
            if "lladdr" in words:
                macs[server.address] = words[words.index("lladdr") + 1]
        return DsrPorts(ports.client_side, ports.server_side, ports.server_mac, macs)

    def configure(self, config: L4Balancer, own_vip: bool = True) -> Path:
        """Validate, render, check (`nft -c`) and load a balancer; the VIP goes on the
        client side (unless VRRP moves it: `own_vip` off). Returns the ruleset file."""
        self._configurable()
        where = f"balancer {self.name}"
        refuse(config.problems(), where)  # before asking the network for MACs
        dsr = self.dsr_ports(config) if config.mode == "dsr" else None
        refuse(node_problems(config, self.ports.server_side, dsr), where)
        self.loads += 1
        path = self.runner.paths.root / f"{self.node}-balancer-{self.loads}.nft"
        path.write_text(render_balancer(config, self.ports.server_side, dsr))
        path.with_suffix(".toml").write_text(
            to_toml(
                config,
                f"{self.node}'s balancer of {path.name}; by hand: topo ... --balancer {self.node}=FILE",
            )
        )
        self.check(path)
        # Strict tracking: a mid-stream packet of a session this balancer does not know
        # (one a failed peer balanced) must not start a new NAT binding to a server the
        # round robin picks; it is invalid, and the balancer's own stack resets it.
        self.runner.run(self.node, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
        self.runner.run(self.node, ["nft", "-f", str(path)])
        if own_vip:
            self.add_vip(config.vip)
        self.config, self.dsr = config, dsr
        return path

    def check(self, path: Path) -> None:
        """nft's own check of the rendered ruleset, refused in nft's words."""
        refused = f"balancer {self.name}: nft rejects {path}: "
        self._run_check(["nft", "-c", "-f", str(path)], lambda out: refused + out)

    def add_vip(self, vip: str) -> None:
        """A VIP on the client side (removed again at the next case); an IPv6 one without
        duplicate address detection, so a daemon can bind it at once."""
        nodad = ["nodad"] if family(vip) == 6 else []
        self.runner.run(
            self.node, ["ip", "addr", "replace", _host_prefix(vip), "dev", self.ports.client_side, *nodad]
        )
        self.vips.add(vip)

    def sessions(self) -> list[conntrack.Session]:
        return conntrack.parse_table(self.runner.run(self.node, ["conntrack", "-L"], merge=False))

    def reset(self) -> None:
        """A case starts clean: no balancer tables, no VIP, no sessions."""
        self._clear()
        self.runner.run(self.node, ["conntrack", "-F"], check=False)

    def _clear(self) -> None:
        clear = self.runner.paths.root / f"{self.node}-clear.nft"
        clear.write_text(render_clear())
        self.runner.run(self.node, ["nft", "-f", str(clear)])
        for vip in self.vips:
            self.runner.run(
                self.node,
                ["ip", "addr", "del", _host_prefix(vip), "dev", self.ports.client_side],
                check=False,
            )
        self.vips.clear()
        self.config, self.dsr = None, None

    def stop(self) -> None:
        """No balancer tables, no VIP (the sessions age out with the kernel's timers)."""
        self._clear()
