"""An L4 balancer in the switch: the decisions, free of os-ken.

Clients address a virtual IP (VIP) and port; the switch rewrites each new session's
packets to one real server (its IP and MAC) and the server's replies back to the VIP, so
a session stays on its server for its life. Where the choice is made:

- in the switch, installed ahead (no packet of a session goes to the controller):
  source-hash and weighted. A client's first packet to the VIP is hashed by OVS's
  `multipath` (the client's address, or the whole session) into a slot, one per backend
  or as many as its weight; the slot's flow `learn`s the session into the session table
  (so it keeps its backend whatever changes later) and rewrites the packet;
- by the controller, one packet-in per new session: round-robin (a counter the switch
  cannot keep) and least-connections, which must also hear each session's end: its FIN
  or RST is copied to the controller (a second packet-in), and an idle session flow's
  removal is reported. Those packet-ins are this design's cost.

Replies need no per-session state: every packet from a backend's service port is
rewritten back to the VIP. ARP for the VIP is answered by the controller (per client).

Here the controller's side: the choosers, each taking `now`, the flows, and what to do
with each packet-in and health change (a `Verdict`); tested offline. The adapter
(`app.py`) only parses packets and translates.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Any

from controllers.ofp import Flow, Verdict
from controllers.ofp import match as _m

ALGORITHMS = ("round-robin", "weighted", "least-connections", "source-hash")
IN_SWITCH = ("weighted", "source-hash")  # decided by a hash in the switch, no packet-in
SESSION_COOKIE = 0x4C420000  # session flows: cookie = SESSION_COOKIE + backend index
T_SESSIONS, T_CHOOSE = 0, 1  # pinned sessions and the static flows; the hash's slots
ETH_IP, ETH_ARP, TCP = 0x0800, 0x0806, 6
FIN, SYN, RST = 0x01, 0x02, 0x04  # TCP flags
SLOT_REG, PORT_REG = "reg0", "reg1"  # the hash's slot; the backend's port, for learn
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
    idle_timeout: int = 10  # s: a session flow idle this long is removed (and reported)
    sessions: dict[Session, Backend] = field(default_factory=dict)
    in_service: tuple[Backend, ...] = ()
    chooser: Chooser = field(init=False)

    def __post_init__(self) -> None:
        if self.algorithm not in CHOOSERS:
            raise ValueError(f"unknown algorithm {self.algorithm!r} (known: {', '.join(ALGORITHMS)})")
        self.in_service = self.in_service or self.backends
        self.chooser = CHOOSERS[self.algorithm](self.in_service)

    @property
    def in_switch(self) -> bool:
        return self.algorithm in IN_SWITCH

    def cookie(self, backend: Backend) -> int:
        return SESSION_COOKIE + self.backends.index(backend)

    def rewrite(self, backend: Backend) -> tuple[tuple[object, ...], ...]:
        """What a client's packet to the VIP becomes: the backend's MAC (next hop) and address."""
        return (
            ("set_field", "eth_dst", backend.mac),
            ("set_field", "ipv4_dst", backend.ip),
            ("output", backend.port),
        )

    def _to_vip(self, **more: object) -> tuple[tuple[str, object], ...]:
        return _m(eth_type=ETH_IP, ip_proto=TCP, ipv4_dst=self.vip, tcp_dst=self.vport, **more)

    def flows(self, dpid: int) -> list[Flow]:
        """Everything a switch needs when it connects: the balancer's switch its flows,
        every other switch one flow that makes it a plain learning switch."""
        if dpid == self.dpid:
            return self.static_flows()
        return [Flow(dpid, T_SESSIONS, 0, (), (("normal",),))]

    def static_flows(self) -> list[Flow]:
        """Everything installed when the switch connects."""
        flows = [
            Flow(self.dpid, T_SESSIONS, 0, (), (("normal",),)),
            Flow(self.dpid, T_SESSIONS, 200, _m(eth_type=ETH_ARP, arp_tpa=self.vip), (("controller",),)),
        ]
        for backend in self.backends:
            replies = _m(eth_type=ETH_IP, ip_proto=TCP, ipv4_src=backend.ip, tcp_src=self.vport)
            back = (("set_field", "eth_src", self.vmac), ("set_field", "ipv4_src", self.vip), ("normal",))
            flows.append(Flow(self.dpid, T_SESSIONS, 10, replies, back))
        return flows + self.choice_flows()

    def choice_flows(self) -> list[Flow]:
        """Where a new session to the VIP goes: to the controller, or through the hash's
        slots over the backends in service (sent again when that changes)."""
        if not self.in_switch:
            return [Flow(self.dpid, T_SESSIONS, 10, self._to_vip(), (("controller",),))]
        slots = [b for b in self.in_service for _ in range(b.weight if self.algorithm == "weighted" else 1)]
        if not slots:
            return [Flow(self.dpid, T_CHOOSE, 0, (), (), command="delete"), self._refuse()]
        hashed = (
            ("multipath", HASH_FIELDS[self.algorithm], 0, len(slots), SLOT_REG),
            ("resubmit", T_CHOOSE),
        )
        flows = [
            Flow(self.dpid, T_CHOOSE, 0, (), (), command="delete"),
            Flow(self.dpid, T_SESSIONS, 10, self._to_vip(), hashed),
        ]
        for slot, backend in enumerate(slots):
            learn = (
                "learn_session",
                T_SESSIONS,
                self.cookie(backend),
                self.idle_timeout,
                backend.mac,
                backend.ip,
                PORT_REG,
            )
            actions = (("set_field", PORT_REG, backend.port), learn, *self.rewrite(backend))
            # The match names IP and TCP: OpenFlow refuses to rewrite an address otherwise.
            slot_match = _m(eth_type=ETH_IP, ip_proto=TCP, **{SLOT_REG: slot})
            flows.append(Flow(self.dpid, T_CHOOSE, 10, slot_match, actions))
        return flows

    def _refuse(self) -> Flow:
        """No backend in service: new sessions to the VIP are dropped."""
        return Flow(self.dpid, T_SESSIONS, 10, self._to_vip(), ())

    def set_in_service(self, names: set[str]) -> list[Flow]:
        """Health checks changed which backends take new sessions; sessions keep theirs."""
        self.in_service = tuple(b for b in self.backends if b.name in names)
        if not self.in_switch:
            open_now = getattr(self.chooser, "open", None)
            self.chooser = CHOOSERS[self.algorithm](self.in_service or self.backends)
            if open_now is not None:
                self.chooser.open = {b.name: open_now.get(b.name, 0) for b in self.in_service}  # type: ignore[attr-defined]
            return [] if self.in_service else [self._refuse()]
        return self.choice_flows()

    def new_session(self, session: Session, now: float) -> tuple[Backend, list[Flow]]:
        """A client's first packet to the VIP reached the controller: choose a backend and
        return it with the flows that pin the session (the packet itself is then sent
        with `rewrite`). With least-connections the session's FIN and RST are copied to
        the controller, so it hears the end."""
        if not self.in_service:
            raise LookupError("no backend in service")
        backend = self.sessions.get(session) or self.chooser.choose(session, now)
        self.sessions[session] = backend
        client, cport = session
        match = self._to_vip(ipv4_src=client, tcp_src=cport)
        flows = [
            Flow(
                self.dpid,
                T_SESSIONS,
                100,
                match,
                self.rewrite(backend),
                cookie=self.cookie(backend),
                idle_timeout=self.idle_timeout,
                notify_removed=True,  # its removal ends the session in the controller's table
            )
        ]
        if self.algorithm == "least-connections":
            for flag in (FIN, RST):
                ending = (*match, ("tcp_flags", (flag, flag)))
                # The copy first: it must reach the controller as the client sent it.
                actions = (("controller",), *self.rewrite(backend))
                flows.append(
                    Flow(
                        self.dpid,
                        T_SESSIONS,
                        110,
                        ending,
                        actions,
                        cookie=self.cookie(backend),
                        idle_timeout=self.idle_timeout,
                    )
                )
        return backend, flows

    def packet_in(self, session: Session, flags: int, now: float) -> Verdict:
        """A client's TCP packet to the VIP reached the controller (`flags`: its TCP flags).
        A FIN or RST is least-connections' copy (the switch forwarded the packet already):
        the session ends. A first packet (SYN) is given a backend: the flows that pin it,
        the packet sent on rewritten, and a "session" line (none for a retransmitted one,
        whose session is pinned already). A late packet of an ended session is left alone."""
        client = f"{session[0]}:{session[1]}"
        if flags & (FIN | RST):
            return self.ended(session, "RST" if flags & RST else "FIN")
        known = session in self.sessions
        if not flags & SYN and not known:
            return Verdict()
        before = self.open_sessions()
        try:
            backend, flows = self.new_session(session, now)
        except LookupError:
            return Verdict(events=(("session_refused", {"client": client, "why": "no backend in service"}),))
        events = (
            ()
            if known
            else (("session", {"client": client, "backend": backend.name, "open_before": before}),)
        )
        return Verdict(tuple(flows), self.rewrite(backend), events)

    def ended(self, session: Session, why: str) -> Verdict:
        """The session ended (`why`: FIN, RST, or idle: its flow was removed): a
        "session_end" line with the open sessions after it, if the session was known."""
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
        """The session ended (FIN, RST, or its flow was removed idle); its backend."""
        backend = self.sessions.pop(session, None)
        if backend is not None:
            self.chooser.closed(backend)
        return backend

    def sessions_out_of_service(self) -> dict[str, list[str]]:
        """The sessions this controller pinned to backends now out of service (they stay
        on them: only new sessions avoid a backend taken out). The in-switch algorithms
        pin sessions without the controller: the switch's flow table lists those."""
        out: dict[str, list[str]] = {}
        for (client, port), backend in self.sessions.items():
            if backend not in self.in_service:
                out.setdefault(backend.name, []).append(f"{client}:{port}")
        return out

    def open_sessions(self) -> dict[str, int]:
        """Open sessions per backend, as the controller sees them."""
        counts = {b.name: 0 for b in self.backends}
        for backend in self.sessions.values():
            counts[backend.name] += 1
        return counts
