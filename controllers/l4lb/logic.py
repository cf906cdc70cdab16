"""An L4 balancer in the switch: the decisions, free of os-ken.

Clients address a virtual IP (VIP) and port; the switch rewrites each new session's
packets to one real server (its IP and MAC) and the server's replies back to the VIP, so
a session stays on its server for its life. The sessions are the switch's conntrack
connections (the userspace datapath's, in a zone of this balancer's own), not flows: a
session's first packet is committed with a destination NAT to its server and the server's
number as the connection's mark; every later packet of it, both ways, is rewritten by
conntrack, and the mark says where it goes. No flow is added per session, so the switch's
flow table (and with it the datapath's cache) stays the same however many sessions come
and go. Where the choice is made:

- in the switch, installed ahead (no packet of a session goes to the controller):
  source-hash and weighted. A session's first packet is hashed by OVS's `multipath` (the
  client's address, or the whole session) into a slot, one per backend or as many as its
  weight; the slot commits the connection to its backend;
- by the controller, one packet-in per new session: round-robin (a counter the switch
  cannot keep) and least-connections, which must also hear each session's end: its FIN
  or RST is copied to the controller (a second packet-in). The controller sends the
  first packet back with the same commit (a packet-out, no flow). Those packet-ins are
  this design's cost.

A session idle for `idle_timeout` seconds is ended: the app reads the zone's connections
every `poll_interval` and removes the idle ones (conntrack's own established timeout is a
day); that read also ends the controller's sessions that closed. ARP for the VIP is
answered by the controller (per client).

Here the controller's side: the choosers, each taking `now`, the flows, and what to do
with each packet-in, health change and read of the connections (a `Verdict`); tested
offline. The adapter (`app.py`) only parses packets and translates.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from controllers.ofp import Flow, Verdict
from controllers.ofp import match as _m

ALGORITHMS = ("round-robin", "weighted", "least-connections", "source-hash")
IN_SWITCH = ("weighted", "source-hash")  # decided by a hash in the switch, no packet-in
# The tables: what enters (ARP, the VIP's packets and the servers' replies, each through
# conntrack); a client's packet to the VIP, tracked; the hash's slots; delivery to a
# session's server by its mark; a server's reply, tracked.
T_IN, T_TOWARD, T_CHOOSE, T_DELIVER, T_BACK = 0, 1, 2, 3, 4
ETH_IP, ETH_ARP, TCP = 0x0800, 0x0806, 6
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10  # TCP flags
SLOT_REG = "reg0"  # the hash's slot
# ct_state bits (ovs-fields(7)) and the states matched (value, mask).
CT_NEW, CT_EST, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x08, 0x10, 0x20
FIRST_PACKET = (CT_TRK | CT_NEW, CT_TRK | CT_NEW | CT_INV)
KNOWN = (CT_TRK | CT_EST, CT_TRK | CT_EST | CT_INV)  # a committed connection, either way
INVALID = (CT_TRK | CT_INV, CT_TRK | CT_INV)
REPLY = (CT_TRK | CT_EST | CT_RPL, CT_TRK | CT_EST | CT_RPL | CT_INV)
# Open vSwitch's userspace conntrack: an established TCP connection's timeout (a day),
# and the states of a closed one (both sides' FINs seen, or reset).
ESTABLISHED_TIMEOUT = 86400
CLOSED_STATES = ("TIME_WAIT", "CLOSED")
# OVS multipath's fields: the addresses only (the VIP is the same for every client, so
# one client, one slot; OVS 3.1's "nw_src" always gives slot 0), or the whole session.
HASH_FIELDS = {"source-hash": "symmetric_l3", "weighted": "symmetric_l3l4"}

Session = tuple[str, int]  # the client's address and port (the VIP and port are the balancer's)


@dataclass(frozen=True)
class Backend:
    """A real server: its name, address, MAC, the switch port it is on, and its weight."""

    name: str
    ip: str
    mac: str  # the next hop's MAC towards it (its own, or a router's)
    port: int
    weight: int = 1


class Chooser:
    """Picks a backend for each new session; told when a session ends."""

    def __init__(self, backends: tuple[Backend, ...]):
        if not backends:
            raise ValueError("no backend to balance to")
        self.backends = backends

    def choose(self, session: Session, now: float) -> Backend:
        raise NotImplementedError

    def closed(self, backend: Backend) -> None:
        """A session of `backend` ended (only least-connections cares)."""


class RoundRobin(Chooser):
    def __init__(self, backends: tuple[Backend, ...]):
        super().__init__(backends)
        self._next = itertools.cycle(backends)

    def choose(self, session: Session, now: float) -> Backend:
        return next(self._next)


class SmoothWeighted(Chooser):
    """Weighted round robin that interleaves (nginx's smooth algorithm): weights 3 and 1
    give a, a, b, a rather than a, a, a, b."""

    def __init__(self, backends: tuple[Backend, ...]):
        super().__init__(backends)
        self._current = {b.name: 0 for b in backends}

    def choose(self, session: Session, now: float) -> Backend:
        total = sum(b.weight for b in self.backends)
        for b in self.backends:
            self._current[b.name] += b.weight
        best = max(self.backends, key=lambda b: self._current[b.name])
        self._current[best.name] -= total
        return best


class LeastConnections(Chooser):
    """The backend with the fewest open sessions (ties: the first listed)."""

    def __init__(self, backends: tuple[Backend, ...]):
        super().__init__(backends)
        self.open = {b.name: 0 for b in backends}

    def choose(self, session: Session, now: float) -> Backend:
        best = min(self.backends, key=lambda b: self.open[b.name])
        self.open[best.name] += 1
        return best

    def closed(self, backend: Backend) -> None:
        self.open[backend.name] = max(0, self.open[backend.name] - 1)


class SourceHash(Chooser):
    """The same client address, the same backend (while the list stays the same)."""

    def choose(self, session: Session, now: float) -> Backend:
        return self.backends[zlib.crc32(session[0].encode()) % len(self.backends)]


CHOOSERS: dict[str, type[Chooser]] = {
    "round-robin": RoundRobin,
    "weighted": SmoothWeighted,
    "least-connections": LeastConnections,
    "source-hash": SourceHash,
}


@dataclass
class Balancer:
    """The controller's balancer on one switch: its flows, a backend for each new session
    (controller-decided algorithms), the backends in service, and its session table."""

    dpid: int
    vip: str
    vmac: str
    vport: int
    backends: tuple[Backend, ...]
    algorithm: str = "round-robin"
    zone: int = 1  # the conntrack zone of its sessions (unique among the switches' apps)
    idle_timeout: int = 10  # s: a session idle this long is ended (its connection removed)
    sessions: dict[Session, Backend] = field(default_factory=dict)
    since: dict[Session, float] = field(default_factory=dict)  # when the controller pinned it
    counts: Counter[str] = field(default_factory=Counter)  # open sessions per backend
    in_service: tuple[Backend, ...] = ()
    chooser: Chooser = field(init=False)

    def __post_init__(self) -> None:
        if self.algorithm not in CHOOSERS:
            raise ValueError(f"unknown algorithm {self.algorithm!r} (known: {', '.join(ALGORITHMS)})")
        if not 0 < self.zone < 0x10000:
            raise ValueError(f"conntrack zone {self.zone} is not 1-65535")
        self.in_service = self.in_service or self.backends
        self.chooser = CHOOSERS[self.algorithm](self.in_service)

    @property
    def in_switch(self) -> bool:
        return self.algorithm in IN_SWITCH

    def mark(self, backend: Backend) -> int:
        """The connection mark naming `backend` (its place in the list, from 1)."""
        return self.backends.index(backend) + 1

    def pin(self, backend: Backend) -> tuple[tuple[object, ...], ...]:
        """A session's first packet: committed to `backend` (destination NAT, its mark),
        then delivered."""
        return (("ct_pin", self.zone, self.mark(backend), backend.ip, T_DELIVER),)

    def _first_packet(self) -> tuple[tuple[str, object], ...]:
        """A new session's first packet: new to conntrack and a SYN. Conntrack would also
        take up a connection from a packet in its middle (an ACK it has no entry for: a
        session removed idle, or a frame made up); that is no session here and is dropped,
        as a balancer drops a packet of a session it does not hold."""
        return _m(eth_type=ETH_IP, ip_proto=TCP, ct_state=FIRST_PACKET, tcp_flags=(SYN, SYN | ACK))

    def _to_vip(self, **more: object) -> tuple[tuple[str, object], ...]:
        return _m(eth_type=ETH_IP, ip_proto=TCP, ipv4_dst=self.vip, tcp_dst=self.vport, **more)

    def flows(self, dpid: int) -> list[Flow]:
        """Everything a switch needs when it connects: the balancer's switch its flows,
        every other switch one flow that makes it a plain learning switch."""
        if dpid == self.dpid:
            return self.static_flows()
        return [Flow(dpid, T_IN, 0, (), (("normal",),))]

    def static_flows(self) -> list[Flow]:
        """Everything installed when the switch connects."""
        tracked = (("ct_nat", self.zone, T_TOWARD),)
        flows = [
            Flow(self.dpid, T_IN, 0, (), (("normal",),)),
            Flow(self.dpid, T_IN, 200, _m(eth_type=ETH_ARP, arp_tpa=self.vip), (("controller",),)),
            Flow(self.dpid, T_IN, 10, self._to_vip(), tracked),
            Flow(self.dpid, T_TOWARD, 30, _m(ct_state=INVALID), ()),  # not a session: dropped
            Flow(self.dpid, T_TOWARD, 10, _m(ct_state=KNOWN), (("resubmit", T_DELIVER),)),
            Flow(self.dpid, T_TOWARD, 0, (), ()),
            # A server's reply to a session: the address back to the VIP's (conntrack), the
            # VIP's MAC; anything else from a server's port goes on as it is.
            Flow(
                self.dpid, T_BACK, 10, _m(ct_state=REPLY), (("set_field", "eth_src", self.vmac), ("normal",))
            ),
            Flow(self.dpid, T_BACK, 0, (), (("normal",),)),
        ]
        if self.algorithm == "least-connections":
            for flag in (FIN, RST):
                # The copy first: it must reach the controller as the client sent it.
                ending = self._to_vip(tcp_flags=(flag, flag))
                flows.append(Flow(self.dpid, T_IN, 20, ending, (("controller",), *tracked)))
        for backend in self.backends:
            replies = _m(eth_type=ETH_IP, ip_proto=TCP, ipv4_src=backend.ip, tcp_src=self.vport)
            flows.append(Flow(self.dpid, T_IN, 10, replies, (("ct_nat", self.zone, T_BACK),)))
            deliver = (("set_field", "eth_dst", backend.mac), ("output", backend.port))
            flows.append(Flow(self.dpid, T_DELIVER, 10, _m(ct_mark=self.mark(backend)), deliver))
        return flows + self.choice_flows()

    def choice_flows(self) -> list[Flow]:
        """Where a new session to the VIP goes: to the controller, or through the hash's
        slots over the backends in service (sent again when that changes)."""
        if not self.in_switch:
            return [Flow(self.dpid, T_TOWARD, 20, self._first_packet(), (("controller",),))]
        slots = [b for b in self.in_service for _ in range(b.weight if self.algorithm == "weighted" else 1)]
        if not slots:
            return [Flow(self.dpid, T_CHOOSE, 0, (), (), command="delete"), self._refuse()]
        hashed = (
            ("multipath", HASH_FIELDS[self.algorithm], 0, len(slots), SLOT_REG),
            ("resubmit", T_CHOOSE),
        )
        flows = [
            Flow(self.dpid, T_CHOOSE, 0, (), (), command="delete"),
            Flow(self.dpid, T_TOWARD, 20, self._first_packet(), hashed),
        ]
        for slot, backend in enumerate(slots):
            # The match names IP and TCP: OpenFlow refuses a NAT of an address otherwise.
            slot_match = _m(eth_type=ETH_IP, ip_proto=TCP, **{SLOT_REG: slot})
            flows.append(Flow(self.dpid, T_CHOOSE, 10, slot_match, self.pin(backend)))
        return flows

    def _refuse(self) -> Flow:
        """No backend in service: new sessions to the VIP are dropped."""
        return Flow(self.dpid, T_TOWARD, 20, self._first_packet(), ())

    def set_in_service(self, names: set[str]) -> list[Flow]:
        """Health checks changed which backends take new sessions; sessions keep theirs."""
        self.in_service = tuple(b for b in self.backends if b.name in names)
        if not self.in_switch:
            open_now = getattr(self.chooser, "open", None)
            self.chooser = CHOOSERS[self.algorithm](self.in_service or self.backends)
            if open_now is not None:
                self.chooser.open = {b.name: open_now.get(b.name, 0) for b in self.in_service}  # type: ignore[attr-defined]
            return self.choice_flows() if self.in_service else [self._refuse()]
        return self.choice_flows()

    def new_session(self, session: Session, now: float) -> Backend:
        """A client's first packet to the VIP reached the controller: its backend (the
        one it was given already, for a retransmitted first packet)."""
        if not self.in_service:
            raise LookupError("no backend in service")
        backend = self.sessions.get(session)
        if backend is None:
            backend = self.sessions[session] = self.chooser.choose(session, now)
            self.since[session] = now
            self.counts[backend.name] += 1
        return backend

    def packet_in(self, session: Session, flags: int, now: float) -> Verdict:
        """A client's TCP packet to the VIP reached the controller (`flags`: its TCP flags).
        A FIN or RST is least-connections' copy (the switch forwarded the packet already):
        the session ends. A first packet (SYN) is given a backend: the packet sent back
        with the commit that pins it, and a "session" line (none for a retransmitted one,
        pinned already). Any other packet of an unknown session is left alone."""
        client = f"{session[0]}:{session[1]}"
        if flags & (FIN | RST):
            return self.ended(session, "RST" if flags & RST else "FIN")
        known = session in self.sessions
        if not flags & SYN and not known:
            return Verdict()
        before = self.open_sessions()
        try:
            backend = self.new_session(session, now)
        except LookupError:
            return Verdict(events=(("session_refused", {"client": client, "why": "no backend in service"}),))
        events = (
            ()
            if known
            else (("session", {"client": client, "backend": backend.name, "open_before": before}),)
        )
        return Verdict(packet=self.pin(backend), events=events)

    def ended(self, session: Session, why: str) -> Verdict:
        """The session ended (`why`: FIN, RST, closed or idle): a "session_end" line with
        the open sessions after it, if the session was known."""
        backend = self.session_ended(session)
        if backend is None:
            return Verdict()
        fields: dict[str, Any] = {
            "client": f"{session[0]}:{session[1]}",
            "backend": backend.name,
            "why": why,
            "open": self.open_sessions(),
        }
        return Verdict(events=(("session_end", fields),))

    def connections_read(
        self, connections: list[dict[str, Any]], now: float
    ) -> tuple[Verdict, list[dict[str, Any]]]:
        """The zone's connections were read (`controllers.conntrack.dump` with stats, the
        closed ones left out: `CLOSED_STATES`): the idle ones to remove (established,
        untouched for `idle_timeout` s or more), and the ends of the controller's sessions
        that are idle, or closed (pinned over a second ago and no longer open in the zone:
        closed, or removed)."""
        ours = [c for c in connections if c.get("zone") == self.zone and c.get("sport") is not None]
        idle = [
            c
            for c in ours
            if c.get("state") == "ESTABLISHED"
            and c.get("timeout") is not None
            # Whole seconds left, cut down: fewer than a day minus the idle timeout is
            # sure to be idle that long. Only a connection on the day-long timeout: OVS
            # gives some established ones a short one (30 s, seen under fast port reuse,
            # where its NAT also moved the client's port), and those end on their own.
            and ESTABLISHED_TIMEOUT / 2 < c["timeout"] < ESTABLISHED_TIMEOUT - self.idle_timeout
        ]
        state = {(c["src"], c["sport"]): c for c in ours}
        idle_keys = {(c["src"], c["sport"]) for c in idle}
        events: list[tuple[str, dict[str, Any]]] = []
        for session in list(self.sessions):
            entry = state.get(session)
            if session in idle_keys:
                why = "idle"
            elif (entry is None or entry.get("state") in CLOSED_STATES) and now - self.since[session] > 1.0:
                why = "closed"
            else:
                continue
            events += self.ended(session, why).events
        return Verdict(events=tuple(events)), idle

    def service_changed(self, addresses: set[str]) -> Verdict:
        """The health-check agent's addresses in service changed: the flows for the new
        set, and an "in_service" line with the sessions kept on backends taken out."""
        flows = self.set_in_service({b.name for b in self.backends if b.ip in addresses})
        fields = {
            "backends": [b.name for b in self.in_service],
            "sessions_kept": self.sessions_out_of_service(),
        }
        return Verdict(flows=tuple(flows), events=(("in_service", fields),))

    def session_ended(self, session: Session) -> Backend | None:
        """The session ended; its backend."""
        backend = self.sessions.pop(session, None)
        self.since.pop(session, None)
        if backend is not None:
            self.counts[backend.name] -= 1
            self.chooser.closed(backend)
        return backend

    def sessions_out_of_service(self) -> dict[str, list[str]]:
        """The sessions this controller pinned to backends now out of service (they stay
        on them: only new sessions avoid a backend taken out). The in-switch algorithms
        pin sessions without the controller: the switch's conntrack zone lists those."""
        out: dict[str, list[str]] = {}
        for (client, port), backend in self.sessions.items():
            if backend not in self.in_service:
                out.setdefault(backend.name, []).append(f"{client}:{port}")
        return out

    def open_sessions(self) -> dict[str, int]:
        """Open sessions per backend, as the controller sees them (kept as they open and
        end: a count over thousands of sessions for every new one would cost the balancer
        its rate)."""
        return {b.name: self.counts[b.name] for b in self.backends}
