"""Firewall load balancing for a two-firewall fabric: the decisions, free of os-ken.

The fabric (topologies/s2_redundant_firewalls.py): an outside switch and an inside switch
each choose a firewall for every session whose packets are addressed to the virtual
gateway MAC, by a hash of the session (addresses, protocol and ports, the same for both
directions). Each firewall's inside access switch sits on the FW1-FW2 link. Modes:

- independent: the two fabric switches use different bits of the hash, so half of the
  sessions cross one firewall inbound and the other on return (the failure);
- symmetric: both use the same bits: both directions of a session cross one firewall,
  and sessions still spread over both;
- correction-mac / correction-mpls: independent choice, and the access switch in front of
  the wrong firewall finds the owner (the outside switch's choice) and sends the packet
  over the FW1-FW2 link to the owner's access switch: rewriting the destination MAC to the
  owner's, or pushing an MPLS label naming the owner that the other side pops;
- sync: independent choice; conntrackd copies sessions between the firewalls.

Sessions live in the datapath's fast path: each fabric switch tracks every IPv4 and IPv6
packet through it in its own conntrack zone (the lab's switches share one userspace
datapath), a session's first packet gets its firewall from a select group the datapath
hashes (`dp_hash`), committed as the connection's `ct_mark`, and later packets to the
virtual gateway go to their mark. No flow is per session, so after the first sessions every new
one runs in cached megaflows (no upcall); the conntrack entries are the controller's
session table (read on request: controllers.fwlb.sessions). When a firewall fails its
group buckets and its marked sessions move to the living one, which marks them as its
own: when it comes back they stay.

Both families take the same path: every flow that matches IPv4 has its IPv6 twin (the same
zones, select groups, marks), but for one difference: an MPLS label says which ethertype
its pop restores, so each family has its own labels. IPv6 neighbour discovery stays out of
conntrack and the hash, as ARP does: forwarded as the switch learned (the hosts and
firewalls keep static neighbours, so none is needed to cross the fabric).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controllers.ofp import Action, Flow, Group, Message, Verdict
from controllers.ofp import match as _m

MODES = ("independent", "symmetric", "correction-mac", "correction-mpls", "sync")
ETH_IP, ETH_IP6, ETH_MPLS = 0x0800, 0x86DD, 0x8847
FAMILIES = (ETH_IP, ETH_IP6)
MPLS_LABEL_BASE = 100  # label 100 + n: "deliver this IPv4 packet to firewall n"
MPLS_LABEL_BASE6 = 200  # label 200 + n: the same for an IPv6 packet
MPLS_LABELS = {ETH_IP: MPLS_LABEL_BASE, ETH_IP6: MPLS_LABEL_BASE6}
IPPROTO_ICMPV6 = 58
ND_TYPES = (133, 134, 135, 136, 137)  # router/neighbour solicitation and advertisement, redirect
# Tables: 0 sorts packets; the tracked ones continue in 1 (to the virtual gateway) or 2
# (from a firewall); 3 commits a session's choice and delivers by it.
T_CLASSIFY, T_TOWARD, T_FROM, T_COMMIT = 0, 1, 2, 3
GROUP_CHOOSE = 1  # the select group choosing a new session's firewall
# ct_state bits (ovs-fields(7)) and the two states matched: a session's first packet, and
# a packet of a known session (tracked, neither new nor invalid).
CT_NEW, CT_INV, CT_TRK = 0x01, 0x10, 0x20
FIRST_PACKET = (CT_TRK | CT_NEW, CT_TRK | CT_NEW)
KNOWN = (CT_TRK, CT_TRK | CT_NEW | CT_INV)
FROM_FIREWALL = 1  # reg1: the packet came from a firewall (commit, then forward normally)
# A failed firewall stays down this long before a port coming back up counts: taking a
# box's links down makes OVS report its ports down, up and down again within ~20 ms.
HOLD_DOWN = 1.0


@dataclass(frozen=True)
class Firewall:
    number: int  # 1 or 2
    out_mac: str
    in_mac: str


@dataclass(frozen=True)
class FabricConfig:
    """What the controller knows of the fabric (computed by the harness from the lab)."""

    mode: str
    vgw_out_mac: str
    vgw_in_mac: str
    firewalls: tuple[Firewall, ...]
    outside: dict[str, Any]  # {"dpid": int, "ports": {peer: port}}
    inside: dict[str, Any]
    access: dict[int, dict[str, Any]]  # firewall number -> the access switch
    # conntrack zones of the outside and inside switches: unique among the labs running
    # on this machine (their switches share one datapath)
    zones: dict[str, int]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FabricConfig:
        if data["mode"] not in MODES:
            raise ValueError(f"unknown mode {data['mode']!r} (known: {', '.join(MODES)})")
        zones = {"outside": int(data["zones"]["so"]), "inside": int(data["zones"]["si"])}
        if len(set(zones.values())) != 2 or not all(0 < z < 0x10000 for z in zones.values()):
            raise ValueError(f"the fabric switches need two distinct conntrack zones 1-65535: {zones}")
        return cls(
            mode=data["mode"],
            vgw_out_mac=data["vgw_out_mac"],
            vgw_in_mac=data["vgw_in_mac"],
            firewalls=tuple(Firewall(**f) for f in data["firewalls"]),
            outside=data["switches"]["so"],
            inside=data["switches"]["si"],
            access={int(f["number"]): data["switches"][f"a{f['number']}"] for f in data["firewalls"]},
            zones=zones,
        )


@dataclass
class Fabric:
    """The flows and groups of every switch for a mode, and how they change when a
    firewall fails."""

    config: FabricConfig
    alive: dict[int, bool] = field(default_factory=dict)
    ports_down: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    down_since: dict[int, float] = field(default_factory=dict)
    reported: dict[int, bool] = field(default_factory=dict)  # liveness as last reported

    def __post_init__(self) -> None:
        self.alive = {f.number: True for f in self.config.firewalls}
        self.ports_down = {f.number: set() for f in self.config.firewalls}
        self.reported = dict(self.alive)

    # --- which firewall -------------------------------------------------------------
    def deliver_to(self, chosen: int) -> int:
        """The firewall that gets what was chosen for (or marked) `chosen`: itself while
        it lives."""
        if self.alive.get(chosen):
            return chosen
        living = [n for n, up in sorted(self.alive.items()) if up]
        return living[0] if living else chosen

    def layout(self, role: str) -> tuple[int, ...]:
        """The firewall of each bucket of a switch's select group. The datapath deals the
        hash values to the buckets in turn (value v to bucket v mod n), so the outside
        switch's two buckets follow the hash's lowest bit, and four buckets (1, 1, 2, 2)
        its second bit: the inside switch's own choice, except in symmetric mode. The
        access switches recompute the outside switch's."""
        numbers = tuple(f.number for f in self.config.firewalls)
        if role == "inside" and self.config.mode != "symmetric":
            return tuple(n for n in numbers for _ in range(2))
        return numbers

    def role(self, dpid: int) -> str:
        if dpid == self.config.outside["dpid"]:
            return "outside"
        if dpid == self.config.inside["dpid"]:
            return "inside"
        if any(a["dpid"] == dpid for a in self.config.access.values()):
            return "access"
        raise KeyError(f"unknown switch dpid {dpid}")

    @property
    def corrects(self) -> bool:
        return self.config.mode.startswith("correction")

    # --- flows ----------------------------------------------------------------------
    def flows(self, dpid: int) -> list[Message]:
        """Everything a switch needs, installed when it connects (its group first)."""
        role = self.role(dpid)
        if role == "outside":
            return self._fabric(self.config.outside, self.config.vgw_out_mac, "outside")
        if role == "inside":
            return self._fabric(self.config.inside, self.config.vgw_in_mac, "inside")
        number = next(n for n, a in self.config.access.items() if a["dpid"] == dpid)
        return self._access(number)

    def _fw_port(self, switch: dict[str, Any], number: int, role: str) -> int:
        ports = switch["ports"]
        return int(ports[f"fw{number}-out"] if role == "outside" else ports[f"a{number}"])

    def _deliver(self, switch: dict[str, Any], role: str, number: int) -> tuple[Action, ...]:
        """To firewall `number` from a fabric switch: its MAC on this side, its port."""
        fw = self._by_number(number)
        mac = fw.out_mac if role == "outside" else fw.in_mac
        return (("set_field", "eth_dst", mac), ("output", self._fw_port(switch, number, role)))

    def _group(self, dpid: int, role: str, command: str = "add") -> Group:
        """The select group: each bucket names its firewall (or the living one) in reg0."""
        buckets = tuple(
            (("set_field", "reg0", self.deliver_to(n)), ("resubmit", T_COMMIT)) for n in self.layout(role)
        )
        return Group(dpid, GROUP_CHOOSE, buckets, command)

    def _fabric(self, switch: dict[str, Any], vgw: str, role: str) -> list[Message]:
        dpid, zone = switch["dpid"], self.config.zones[role]
        flows: list[Message] = [
            self._group(dpid, role),
            Flow(dpid, T_CLASSIFY, 0, (), (("normal",),)),
            *_neighbour_discovery(dpid, T_CLASSIFY, 110, (("normal",),)),
            # Unknown or invalid to conntrack: by the hash alone (committed if new, table 3).
            Flow(dpid, T_TOWARD, 0, (), (("group", GROUP_CHOOSE),)),
            Flow(dpid, T_FROM, 0, (), (("normal",),)),
            Flow(
                dpid,
                T_FROM,
                20,
                _m(ct_state=FIRST_PACKET),
                (("set_field", "reg1", FROM_FIREWALL), ("group", GROUP_CHOOSE)),
            ),
        ]
        for eth in FAMILIES:
            # To the virtual gateway: tracked, then delivered by its session (table 1).
            flows.append(
                Flow(dpid, T_CLASSIFY, 100, _m(eth_type=eth, eth_dst=vgw), (("ct", zone, T_TOWARD),))
            )
            # From a firewall: tracked, so a session opened from this side is known (table 2).
            flows += [
                Flow(
                    dpid,
                    T_CLASSIFY,
                    90,
                    _m(eth_type=eth, in_port=self._fw_port(switch, fw.number, role)),
                    (("ct", zone, T_FROM),),
                )
                for fw in self.config.firewalls
            ]
        for fw in self.config.firewalls:
            n = fw.number
            deliver = self._deliver(switch, role, n)
            flows.append(Flow(dpid, T_COMMIT, 10, _m(reg0=n), deliver))
            for eth in FAMILIES:
                flows += [
                    Flow(
                        dpid,
                        T_COMMIT,
                        20,
                        _m(eth_type=eth, reg0=n, ct_state=FIRST_PACKET),
                        (("ct_commit", zone, n), *deliver),
                    ),
                    Flow(
                        dpid,
                        T_COMMIT,
                        30,
                        _m(eth_type=eth, reg0=n, reg1=FROM_FIREWALL, ct_state=FIRST_PACKET),
                        (("ct_commit", zone, n), ("normal",)),
                    ),
                ]
        return flows + self._pinned(switch, role)

    def _pinned(self, switch: dict[str, Any], role: str) -> list[Message]:
        """Table 1: a known session to its marked firewall while it lives, else to the
        living one, which the connection is then marked with (it stays there)."""
        dpid, zone = switch["dpid"], self.config.zones[role]
        flows: list[Message] = []
        for fw in self.config.firewalls:
            owner = self.deliver_to(fw.number)
            actions = self._deliver(switch, role, owner)
            if owner != fw.number:
                actions = (("ct_commit", zone, owner), *actions)
            flows += [
                Flow(dpid, T_TOWARD, 30, _m(eth_type=eth, ct_state=KNOWN, ct_mark=fw.number), actions)
                for eth in FAMILIES
            ]
        return flows

    def _by_number(self, number: int) -> Firewall:
        return next(f for f in self.config.firewalls if f.number == number)

    def _access(self, number: int) -> list[Message]:
        switch = self.config.access[number]
        dpid, ports = switch["dpid"], switch["ports"]
        fw_in, fw_sync, uplink, link = (
            int(ports[k]) for k in (f"fw{number}-in", f"fw{number}-sync", "si", f"a{3 - number}")
        )
        me = self._by_number(number)
        flows: list[Message] = []
        if self.corrects:
            flows.append(self._group(dpid, "outside"))
        flows += [
            Flow(dpid, T_CLASSIFY, 10, _m(in_port=uplink), (("output", fw_in),)),
            Flow(dpid, T_CLASSIFY, 10, _m(in_port=fw_in), (("output", uplink),)),
            Flow(dpid, T_CLASSIFY, 10, _m(in_port=fw_sync), (("output", link),)),
            Flow(dpid, T_CLASSIFY, 10, _m(in_port=link), (("output", fw_sync),)),
            # Corrected packets arriving over the FW1-FW2 link go to this firewall.
            Flow(dpid, T_CLASSIFY, 30, _m(in_port=link, eth_dst=me.in_mac), (("output", fw_in),)),
            *(
                Flow(
                    dpid,
                    T_CLASSIFY,
                    30,
                    _m(in_port=link, eth_type=ETH_MPLS, mpls_label=MPLS_LABELS[eth] + number),
                    (("pop_mpls", eth), ("set_field", "eth_dst", me.in_mac), ("output", fw_in)),
                )
                for eth in FAMILIES
            ),
        ]
        if self.corrects:
            # Return traffic for this firewall: its owner is the outside switch's choice,
            # recomputed here with the outside switch's group (the same symmetric hash and
            # buckets; this switch keeps no session state of its own). Neighbour discovery
            # is no session's: to this firewall.
            flows += _neighbour_discovery(dpid, T_CLASSIFY, 25, (("output", fw_in),), in_port=uplink)
            flows += [
                Flow(
                    dpid,
                    T_CLASSIFY,
                    20,
                    _m(in_port=uplink, eth_type=eth, eth_dst=me.in_mac),
                    (("group", GROUP_CHOOSE),),
                )
                for eth in FAMILIES
            ]
            flows += [
                Flow(
                    dpid,
                    T_COMMIT,
                    10,
                    _m(eth_type=eth, reg0=fw.number),
                    self._correct(number, fw.number, eth),
                )
                for fw in self.config.firewalls
                for eth in FAMILIES
            ]
        return flows

    def _correct(self, number: int, owner: int, eth: int) -> tuple[Action, ...]:
        """At firewall `number`'s access switch: a return packet of family `eth` to `owner`."""
        ports = self.config.access[number]["ports"]
        fw_in, link = int(ports[f"fw{number}-in"]), int(ports[f"a{3 - number}"])
        if owner == number:
            return (("output", fw_in),)
        if self.config.mode == "correction-mac":
            return (("set_field", "eth_dst", self._by_number(owner).in_mac), ("output", link))
        return (
            ("push_mpls", ETH_MPLS),
            ("set_field", "mpls_label", MPLS_LABELS[eth] + owner),
            ("output", link),
        )

    # --- events ---------------------------------------------------------------------
    def firewall_of_port(self, dpid: int, port: int) -> int | None:
        """The firewall whose interface is on this switch port, if any."""
        for fw in self.config.firewalls:
            if (
                self.config.outside["dpid"] == dpid
                and int(self.config.outside["ports"][f"fw{fw.number}-out"]) == port
            ):
                return fw.number
            access = self.config.access[fw.number]
            if access["dpid"] == dpid and int(access["ports"][f"fw{fw.number}-in"]) == port:
                return fw.number
        return None

    def port_changed(self, dpid: int, port: int, up: bool, now: float = 0.0) -> list[Message]:
        """A firewall's fabric port went down or up. The firewall is alive while all its
        fabric ports are up; when that changes, its hash buckets and sessions move.
        Coming back is held down for HOLD_DOWN seconds after a failure (see `tick`)."""
        number = self.firewall_of_port(dpid, port)
        if number is None:
            return []
        if up:
            self.ports_down[number].discard((dpid, port))
        else:
            self.ports_down[number].add((dpid, port))
        return self._settle(number, now)

    def tick(self, now: float) -> list[Message]:
        """Settle what the hold-down deferred (called periodically)."""
        return [flow for number in sorted(self.alive) for flow in self._settle(number, now)]

    def report(self, changes: list[Message]) -> Verdict:
        """What the controller does after a port change or a tick: send its flows, and a
        firewall_up / firewall_down line for each firewall whose liveness changed since
        the last report."""
        events = tuple(
            ("firewall_" + ("up" if alive else "down"), {"firewall": number, "flows_changed": len(changes)})
            for number, alive in self.alive.items()
            if self.reported.get(number) != alive
        )
        self.reported = dict(self.alive)
        return Verdict(tuple(changes), events=events)

    def _settle(self, number: int, now: float) -> list[Message]:
        alive = not self.ports_down[number]
        if alive == self.alive[number]:
            return []
        if alive and now - self.down_since.get(number, float("-inf")) < HOLD_DOWN:
            return []
        self.alive[number] = alive
        if not alive:
            self.down_since[number] = now
        changes: list[Message] = []
        for role, switch in (("outside", self.config.outside), ("inside", self.config.inside)):
            changes += [self._group(switch["dpid"], role, "modify"), *self._pinned(switch, role)]
        if self.corrects:
            changes += [self._group(a["dpid"], "outside", "modify") for a in self.config.access.values()]
        return changes


def _neighbour_discovery(
    dpid: int, table: int, priority: int, actions: tuple[Action, ...], **fields: Any
) -> list[Message]:
    """Flows sending IPv6 neighbour discovery (ICMPv6 types 133-137) the way of `actions`,
    ahead of conntrack: it opens no session, and a unicast solicitation hashed to one
    firewall as if it were one would have that firewall answer for the shared gateway."""
    return [
        Flow(
            dpid,
            table,
            priority,
            _m(eth_type=ETH_IP6, ip_proto=IPPROTO_ICMPV6, icmpv6_type=t, **fields),
            actions,
        )
        for t in ND_TYPES
    ]
