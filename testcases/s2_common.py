"""S2's shared parts (SCENARIOS.md, asymmetric paths through redundant firewalls): the
fabric modes, the firewalls' policy and how a case prepares them.

Outside hosts - outside fabric switch - FW1 | FW2 - access switches (FW1-FW2 link) - inside
fabric switch - servers; the addresses are the topology's plan (topologies/
s2_redundant_firewalls.py). The os-ken controller (controllers/fwlb) runs the fabric; each
case restarts it in the mode under test.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab import topology
from lab.config import FirewallPolicy, Service

PLAN = topology.plan("s2")
PLAN6 = topology.plan("s2", family=6)  # the same hosts and gateways in IPv6
CLIENTS = list(PLAN.hosts["outside"])
SERVER_HOSTS = list(PLAN.hosts["inside"])
SERVICE, BULK = 8080, 9000
FIREWALLS = tuple(PLAN.roles)
ECHO_PORTS = {s: (SERVICE,) for s in SERVER_HOSTS}  # node -> ports: each case's echo servers
SYN_ACK = "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"
# With sync, a split session whose SYN-ACK outran the copy opens at the SYN-ACK's
# retransmission (1.0-1.04 s) and then waits 2.43-2.50 s for its echo (measured: the
# sync cases' "client timeout margins"); under a 3 s client timeout that left 0.5 s. The
# sync cases give each wait twice the longest measured.
RETRANSMITTED_TIMEOUT = 5.0


@dataclass(frozen=True)
class Mode:
    """How the fabric and the firewalls handle a session whose directions it splits."""

    name: str
    fabric: str  # the controller's mode
    sync: bool = False
    defer: bool = False  # with sync: hold a new session's SYN (SYN-ACK) until the peer has it
    handoff: str = "off"  # the firewalls' own path correction
    what: str = ""
    client_timeout: float = 3.0  # s: each connect and echo wait (the slowest here: 0.12 s)

    @property
    def corrects(self) -> bool:
        return self.fabric.startswith("correction") or self.handoff != "off"


MODES = {
    m.name: m
    for m in (
        Mode("independent", "independent", what="each fabric switch hashes on its own"),
        Mode("symmetric", "symmetric", what="both fabric switches hash alike"),
        Mode("correction-mac", "correction-mac", what="the fabric rewrites the MAC to the owner"),
        Mode("correction-mpls", "correction-mpls", what="the fabric pushes an MPLS label naming the owner"),
        Mode("firewall-route", "independent", handoff="route", what="the firewall routes to its peer"),
        Mode("firewall-vxlan", "independent", handoff="vxlan", what="the firewall tunnels to its peer"),
        Mode(
            "sync",
            "independent",
            sync=True,
            what="conntrackd copies sessions to the peer",
            client_timeout=RETRANSMITTED_TIMEOUT,
        ),
        Mode(
            "sync-defer",
            "independent",
            sync=True,
            defer=True,
            what="conntrackd copies sessions; a new session's SYN and SYN-ACK wait for the peer's copy",
            client_timeout=RETRANSMITTED_TIMEOUT,
        ),
    )
}


def policy(mode: Mode) -> FirewallPolicy:
    """The servers' networks (the topology's plans, IPv4 and IPv6) published on the service
    and bulk ports."""
    inside = (PLAN.networks["inside"], PLAN6.networks["inside"])
    return FirewallPolicy(
        tcp_timeout=120,
        allow_inbound=tuple(Service(port, address=net) for net in inside for port in (SERVICE, BULK)),
        peer_handoff=mode.handoff,
    )


def prepare(lab, mode: Mode, external_cache: bool = False) -> None:
    """The controller in the mode's fabric mode; both firewalls with the mode's policy,
    empty tables and zeroed counters; sync on or off (deferring where the mode says)."""
    lab.restart_controller(mode=mode.fabric)
    for name in FIREWALLS:
        fw = lab.node(name)
        fw.stop_sync()
        fw.apply_policy(policy(mode))
        fw.reset()
    if mode.sync:
        for name in FIREWALLS:
            lab.node(name).start_sync(external_cache=external_cache, defer=mode.defer)


def servers_of(lab) -> list[str]:
    """The echo servers' address:port, each case's sessions' destinations."""
    return [f"{lab.ip(s)}:{SERVICE}" for s in SERVER_HOSTS]
