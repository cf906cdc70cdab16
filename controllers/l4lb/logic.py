"""An L4 balancer in the switch: the decisions, free of os-ken.

Clients address a virtual IP (VIP) and port; the switch rewrites each new session's
packets to one real server (its IP and MAC) and the server's replies back to the VIP, so
a session stays on its server for its life. Where the choice is made:

- in the switch, installed ahead (no packet of a session goes to the controller):
  source-hash (an OpenFlow select group hashing the client's address) and weighted (a
  select group whose buckets carry the weights, hashing the session);
- by the controller, one packet-in per new session: round-robin (a counter the switch
  cannot keep) and least-connections (it must also hear each session's end: the session
  flows are removed after an idle time and report it). That packet-in is this design's cost.

Here the controller's side: the choosers, each taking `now`, and the session flows they
install; tested offline. The adapter (`app.py`) only translates.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field

from controllers.fwlb.logic import Flow

ALGORITHMS = ("round-robin", "weighted", "least-connections", "source-hash")
IN_SWITCH = ("weighted", "source-hash")  # decided by a select group, no packet-in
SESSION_COOKIE = 0x4C420000  # session flows: cookie = SESSION_COOKIE + backend index
T_SESSIONS = 0
ETH_IP, TCP = 0x0800, 6

Session = tuple[str, int]  # the client's address and port (the VIP and port are the balancer's)


@dataclass(frozen=True)
class Backend:
    """A real server: its name, address, MAC, the switch port it is on, and its weight."""

    name: str
    ip: str
    mac: str
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
    """The controller's balancer on one switch: a backend for each new session, the two
    flows that pin it (client to server, server to client), and its session table."""

    dpid: int
    vip: str
    vmac: str
    vport: int
    backends: tuple[Backend, ...]
    algorithm: str = "round-robin"
    idle_timeout: int = 10  # s: a session flow idle this long is removed (and reported)
    sessions: dict[Session, Backend] = field(default_factory=dict)
    chooser: Chooser = field(init=False)

    def __post_init__(self) -> None:
        if self.algorithm not in CHOOSERS:
            raise ValueError(f"unknown algorithm {self.algorithm!r} (known: {', '.join(ALGORITHMS)})")
        self.chooser = CHOOSERS[self.algorithm](self.backends)

    def new_session(self, session: Session, client_port: int, now: float) -> list[Flow]:
        """A client's first packet to the VIP came in on `client_port`: choose, pin, and
        return the flows (the packet itself is then sent through them)."""
        backend = self.sessions.get(session) or self.chooser.choose(session, now)
        self.sessions[session] = backend
        cookie = SESSION_COOKIE + self.backends.index(backend)
        client, cport = session
        inbound = Flow(
            self.dpid,
            T_SESSIONS,
            100,
            _m(
                eth_type=ETH_IP,
                ip_proto=TCP,
                ipv4_src=client,
                tcp_src=cport,
                ipv4_dst=self.vip,
                tcp_dst=self.vport,
            ),
            (
                ("set_field", "eth_dst", backend.mac),
                ("set_field", "ipv4_dst", backend.ip),
                ("output", backend.port),
            ),
            cookie=cookie,
            idle_timeout=self.idle_timeout,
            notify_removed=True,  # its removal ends the session in the controller's table
        )
        outbound = Flow(
            self.dpid,
            T_SESSIONS,
            100,
            _m(
                eth_type=ETH_IP,
                ip_proto=TCP,
                ipv4_src=backend.ip,
                tcp_src=self.vport,
                ipv4_dst=client,
                tcp_dst=cport,
            ),
            (
                ("set_field", "eth_src", self.vmac),
                ("set_field", "ipv4_src", self.vip),
                ("output", client_port),
            ),
            cookie=cookie,
            idle_timeout=self.idle_timeout,
        )
        return [inbound, outbound]

    def session_removed(self, session: Session) -> None:
        """The switch removed a session's inbound flow (idle): the session has ended."""
        backend = self.sessions.pop(session, None)
        if backend is not None:
            self.chooser.closed(backend)

    def open_sessions(self) -> dict[str, int]:
        """Open sessions per backend, as the controller sees them."""
        counts = {b.name: 0 for b in self.backends}
        for backend in self.sessions.values():
            counts[backend.name] += 1
        return counts


@dataclass(frozen=True)
class Group:
    """An OpenFlow select group: each new session takes one bucket (weight, actions),
    chosen by a hash of `fields` (OVS `selection_method=hash`; empty: the whole 5-tuple)."""

    dpid: int
    group_id: int
    buckets: tuple[tuple[int, tuple[tuple[object, ...], ...]], ...]
    fields: tuple[str, ...] = ()
    command: str = "add"


T_CHOOSE = 1  # table: a session not pinned yet goes to the group
GROUP_ID = 1


def in_switch_pipeline(lb: Balancer) -> tuple[Group, list[Flow]]:
    """For weighted and source-hash: everything installed ahead, no packet-in.

    Table 0 holds the pinned sessions (learned) and, per backend, the rewrite of its
    replies back to the VIP; a client's first packet to the VIP misses the sessions and
    goes to the select group, whose bucket learns the session into table 0 (so it keeps
    its backend whatever the group becomes later) and rewrites it to the backend."""
    if lb.algorithm not in IN_SWITCH:
        raise ValueError(f"{lb.algorithm} is decided by the controller (a packet-in per session)")
    fields = ("ip_src",) if lb.algorithm == "source-hash" else ()
    buckets = []
    for index, backend in enumerate(lb.backends):
        weight = backend.weight if lb.algorithm == "weighted" else 1
        actions = (
            ("learn_session", T_SESSIONS, SESSION_COOKIE + index, lb.idle_timeout, index),
            ("set_field", "eth_dst", backend.mac),
            ("set_field", "ipv4_dst", backend.ip),
            ("output", backend.port),
        )
        buckets.append((weight, actions))
    group = Group(lb.dpid, GROUP_ID, tuple(buckets), fields)
    to_vip = _m(eth_type=ETH_IP, ip_proto=TCP, ipv4_dst=lb.vip, tcp_dst=lb.vport)
    flows = [
        Flow(lb.dpid, T_SESSIONS, 0, (), (("normal",),)),
        Flow(lb.dpid, T_SESSIONS, 10, to_vip, (), goto=T_CHOOSE),
        Flow(lb.dpid, T_CHOOSE, 10, to_vip, (("group", GROUP_ID),)),
    ]
    for backend in lb.backends:
        replies = _m(eth_type=ETH_IP, ip_proto=TCP, ipv4_src=backend.ip, tcp_src=lb.vport)
        rewrite = (("set_field", "eth_src", lb.vmac), ("set_field", "ipv4_src", lb.vip), ("normal",))
        flows.append(Flow(lb.dpid, T_SESSIONS, 10, replies, rewrite))
    return group, flows


def _m(**fields: object) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(fields.items()))
