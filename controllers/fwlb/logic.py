"""Firewall load balancing for a two-firewall fabric: the decisions, free of os-ken.

The fabric (topologies/s2_redundant_firewalls.py): an outside switch and an inside switch
each choose a firewall for every packet addressed to the virtual gateway MAC, by a hash of
the session (addresses and ports, the same for both directions). Each firewall's inside
access switch sits on the FW1-FW2 link. Modes:

- independent: the two fabric switches hash with different keys, so half of the sessions
  cross one firewall inbound and the other on return (the failure);
- symmetric: both hash with the same key: both directions of a session cross one firewall,
  and sessions still spread over both;
- correction-mac / correction-mpls: independent choice, and the access switch in front of
  the wrong firewall recomputes the owner (the outside switch's hash) and sends the packet
  over the FW1-FW2 link to the owner's access switch: rewriting the destination MAC to the
  owner's, or pushing an MPLS label naming the owner that the other side pops;
- sync: independent choice; conntrackd copies sessions between the firewalls.

Every session's first choice is learned into the switch (OVS `learn`), so a session keeps
its firewall; those learned flows are the controller's session table. The pipeline is
installed ahead of traffic: no packet of a session goes to the controller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controllers.ofp import Action, Flow, Verdict
from controllers.ofp import match as _m

MODES = ("independent", "symmetric", "correction-mac", "correction-mpls", "sync")
OUTSIDE_BASIS, INSIDE_BASIS = 1, 2  # hash keys: equal keys give the same firewall both ways
MPLS_LABEL_BASE = 100  # label 100 + n: "deliver to firewall n"
SESSION_COOKIE = 0x5E550000  # learned session flows: cookie = SESSION_COOKIE + firewall
T_SELECT, T_DELIVER, T_SESSIONS, T_LEARN = 0, 1, 5, 6
ETH_IP, ETH_MPLS, TCP = 0x0800, 0x8847, 6
# A failed firewall stays down this long before a port coming back up counts: taking a
# box's links down makes OVS report its ports down, up and down again within ~20 ms.
HOLD_DOWN = 1.0

HASHED = "symmetric_l3l4"  # the hash's fields: addresses, protocol and ports, the same both ways


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
    session_idle: int = 60

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FabricConfig:
        if data["mode"] not in MODES:
            raise ValueError(f"unknown mode {data['mode']!r} (known: {', '.join(MODES)})")
        return cls(
            mode=data["mode"],
            vgw_out_mac=data["vgw_out_mac"],
            vgw_in_mac=data["vgw_in_mac"],
            firewalls=tuple(Firewall(**f) for f in data["firewalls"]),
            outside=data["switches"]["so"],
            inside=data["switches"]["si"],
            access={int(f["number"]): data["switches"][f"a{f['number']}"] for f in data["firewalls"]},
            session_idle=int(data.get("session_idle", 60)),
        )


@dataclass
class Fabric:
    """The flows of every switch for a mode, and how they change when a firewall fails."""

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
        """The firewall that gets what the hash gave to `chosen`: itself while it lives."""
        if self.alive.get(chosen):
            return chosen
        living = [n for n, up in sorted(self.alive.items()) if up]
        return living[0] if living else chosen

    def inside_basis(self) -> int:
        return OUTSIDE_BASIS if self.config.mode == "symmetric" else INSIDE_BASIS

    def role(self, dpid: int) -> str:
        if dpid == self.config.outside["dpid"]:
            return "outside"
        if dpid == self.config.inside["dpid"]:
            return "inside"
        if any(a["dpid"] == dpid for a in self.config.access.values()):
            return "access"
        raise KeyError(f"unknown switch dpid {dpid}")

    # --- flows ----------------------------------------------------------------------
    def flows(self, dpid: int) -> list[Flow]:
        """Everything a switch needs, installed when it connects."""
        role = self.role(dpid)
        if role == "outside":
            return self._fabric(self.config.outside, self.config.vgw_out_mac, OUTSIDE_BASIS, "out")
        if role == "inside":
            return self._fabric(self.config.inside, self.config.vgw_in_mac, self.inside_basis(), "in")
        number = next(n for n, a in self.config.access.items() if a["dpid"] == dpid)
        return self._access(number)

    def _fw_port(self, switch: dict[str, Any], number: int, side: str) -> int:
        ports = switch["ports"]
        if side == "out":
            return int(ports[f"fw{number}-out"])
        return int(ports[f"a{number}"])

    def _fabric(self, switch: dict[str, Any], vgw: str, basis: int, side: str) -> list[Flow]:
        dpid = switch["dpid"]
        flows = [
            Flow(dpid, T_SELECT, 0, (), (("normal",),)),
            # To the virtual gateway: find the session's firewall (table 5), then deliver.
            Flow(
                dpid,
                T_SELECT,
                100,
                _m(eth_type=ETH_IP, eth_dst=vgw),
                (("resubmit", T_SESSIONS),),
                goto=T_DELIVER,
            ),
            # A session not seen yet: hash it, and learn the choice for the session's life.
            Flow(
                dpid,
                T_SESSIONS,
                0,
                (),
                (("multipath", HASHED, basis, len(self.config.firewalls), "reg0"), ("resubmit", T_LEARN)),
            ),
        ]
        for index, fw in enumerate(self.config.firewalls):
            learn = ("learn", T_SESSIONS, SESSION_COOKIE + fw.number, self.config.session_idle, index)
            flows.append(Flow(dpid, T_LEARN, 10, _m(eth_type=ETH_IP, ip_proto=TCP, reg0=index), (learn,)))
        flows += self._delivery(switch, side)
        return flows

    def _delivery(self, switch: dict[str, Any], side: str) -> list[Flow]:
        """Table 1: hash slot -> the living firewall it stands for."""
        flows = []
        for index, fw in enumerate(self.config.firewalls):
            target = self._by_number(self.deliver_to(fw.number))
            mac = target.out_mac if side == "out" else target.in_mac
            actions = (("set_field", "eth_dst", mac), ("output", self._fw_port(switch, target.number, side)))
            flows.append(Flow(switch["dpid"], T_DELIVER, 10, _m(reg0=index), actions))
        return flows

    def _by_number(self, number: int) -> Firewall:
        return next(f for f in self.config.firewalls if f.number == number)

    def _access(self, number: int) -> list[Flow]:
        switch = self.config.access[number]
        dpid, ports = switch["dpid"], switch["ports"]
        fw_in, fw_sync, uplink, link = (
            int(ports[k]) for k in (f"fw{number}-in", f"fw{number}-sync", "si", f"a{3 - number}")
        )
        me = self._by_number(number)
        flows = [
            Flow(dpid, T_SELECT, 10, _m(in_port=uplink), (("output", fw_in),)),
            Flow(dpid, T_SELECT, 10, _m(in_port=fw_in), (("output", uplink),)),
            Flow(dpid, T_SELECT, 10, _m(in_port=fw_sync), (("output", link),)),
            Flow(dpid, T_SELECT, 10, _m(in_port=link), (("output", fw_sync),)),
            # Corrected packets arriving over the FW1-FW2 link go to this firewall.
            Flow(dpid, T_SELECT, 30, _m(in_port=link, eth_dst=me.in_mac), (("output", fw_in),)),
            Flow(
                dpid,
                T_SELECT,
                30,
                _m(in_port=link, eth_type=ETH_MPLS, mpls_label=MPLS_LABEL_BASE + number),
                (("pop_mpls", ETH_IP), ("set_field", "eth_dst", me.in_mac), ("output", fw_in)),
            ),
        ]
        if self.config.mode.startswith("correction"):
            # Return traffic for this firewall: recompute the owner the outside switch chose.
            flows.append(
                Flow(
                    dpid,
                    T_SELECT,
                    20,
                    _m(in_port=uplink, eth_type=ETH_IP, eth_dst=me.in_mac),
                    (("multipath", HASHED, OUTSIDE_BASIS, len(self.config.firewalls), "reg0"),),
                    goto=T_DELIVER,
                )
            )
            flows += self._correction(number, fw_in, link)
        return flows

    def _correction(self, number: int, fw_in: int, link: int) -> list[Flow]:
        dpid = self.config.access[number]["dpid"]
        flows = []
        for index, fw in enumerate(self.config.firewalls):
            owner = self.deliver_to(fw.number)
            if owner == number:
                actions: tuple[Action, ...] = (("output", fw_in),)
            elif self.config.mode == "correction-mac":
                actions = (("set_field", "eth_dst", self._by_number(owner).in_mac), ("output", link))
            else:
                actions = (
                    ("push_mpls", ETH_MPLS),
                    ("set_field", "mpls_label", MPLS_LABEL_BASE + owner),
                    ("output", link),
                )
            flows.append(Flow(dpid, T_DELIVER, 10, _m(reg0=index), actions))
        return flows

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

    def port_changed(self, dpid: int, port: int, up: bool, now: float = 0.0) -> list[Flow]:
        """A firewall's fabric port went down or up. The firewall is alive while all its
        fabric ports are up; when that changes, its hash slots (and so its sessions) move.
        Coming back is held down for HOLD_DOWN seconds after a failure (see `tick`)."""
        number = self.firewall_of_port(dpid, port)
        if number is None:
            return []
        if up:
            self.ports_down[number].discard((dpid, port))
        else:
            self.ports_down[number].add((dpid, port))
        return self._settle(number, now)

    def tick(self, now: float) -> list[Flow]:
        """Settle what the hold-down deferred (called periodically)."""
        return [flow for number in sorted(self.alive) for flow in self._settle(number, now)]

    def report(self, changes: list[Flow]) -> Verdict:
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

    def _settle(self, number: int, now: float) -> list[Flow]:
        alive = not self.ports_down[number]
        if alive == self.alive[number]:
            return []
        if alive and now - self.down_since.get(number, float("-inf")) < HOLD_DOWN:
            return []
        self.alive[number] = alive
        if not alive:
            self.down_since[number] = now
        changes = self._delivery(self.config.outside, "out") + self._delivery(self.config.inside, "in")
        if self.config.mode.startswith("correction"):
            for n, access in self.config.access.items():
                ports = access["ports"]
                changes += self._correction(n, int(ports[f"fw{n}-in"]), int(ports[f"a{3 - n}"]))
        return changes


@dataclass
class Session:
    client: str
    server: str
    inbound_fw: int | None = None
    return_fw: int | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0
    packets_in: int = 0
    packets_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SessionTable:
    """Sessions as the fabric learned them: which firewall each direction crossed, when,
    how many packets. Fed with the learned flows of the outside and inside switches."""

    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)

    def update(self, role: str, entries: list[dict[str, Any]], now: float) -> None:
        """`entries`: learned flows as dicts with cookie, src, sport, dst, dport, packets, duration."""
        for e in entries:
            fw = int(e["cookie"]) - SESSION_COOKIE
            if not 1 <= fw <= 9:
                continue
            a, b = f"{e['src']}:{e['sport']}", f"{e['dst']}:{e['dport']}"
            key = (a, b) if role == "outside" else (b, a)
            session = self.sessions.get(key)
            if session is None:
                session = self.sessions[key] = Session(
                    client=key[0], server=key[1], first_seen=now - float(e["duration"]), last_seen=now
                )
            session.first_seen = min(session.first_seen, now - float(e["duration"]))
            packets = int(e["packets"])
            if role == "outside":
                if packets > session.packets_in:
                    session.last_seen = now
                session.inbound_fw, session.packets_in = fw, packets
            else:
                if packets > session.packets_out:
                    session.last_seen = now
                session.return_fw, session.packets_out = fw, packets

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in sorted(self.sessions.values(), key=lambda s: s.first_seen)]
