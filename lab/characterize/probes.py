"""The probes of a characterization, each a function of the running lab: real traffic
from the inside host `ci` to the outside hosts `srv` and `stun` through the device, and
what it shows, read from the captures on both sides, the apps' own logs and, where a
driver reads it, the device's session table.

Every probe takes its client source ports from `Ports` (the run's block), so the
evidence holds only its own flows.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.characterize.bisect import IdleSearch
from lab.errors import LabTimeout
from lab.packets import TcpSegment
from lab.traffic import IdleProbe, ProbeResult, UdpProbe, run_probes, run_udp_probes, send_segment
from lab.traffic.probes import server_events
from lab.wait import wait_until

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

CLIENT, SERVER = "ci", "srv"
ECONNRESET = 104
# s: a hand-made segment not beyond the device by then is dropped; longer than TCP's first
# retransmission timeout (1 s), a real session would have sent it again
CROSSING_WAIT = 1.0


class Ports:
    """Source ports handed out one by one from a block (the run's or the case's)."""

    def __init__(self, block: range):
        self.block, self.next = block, 0

    def take(self, count: int = 1) -> range:
        if self.next + count > len(self.block):
            raise ValueError(f"the characterization needs more than the {len(self.block)} ports of its block")
        self.next += count
        return self.block[self.next - count : self.next]

    def one(self) -> int:
        return self.take()[0]


@dataclass
class Sides:
    """The two captures around the device: at the inside client and at the outside server."""

    inside: list[TcpSegment]
    outside: list[TcpSegment]


# --- idle-time searches ---------------------------------------------------------------
@dataclass
class TcpPoint:
    """One idle time of the TCP search: a session the client speaks on first after the
    idle time, and one the server speaks on first (the service direction)."""

    idle: float
    client_first: ProbeResult
    server_first: ProbeResult

    @property
    def alive(self) -> bool:
        return self.client_first.outcome == "delivered" and self.server_first.outcome == "delivered"


@dataclass
class Search:
    """An idle-time search as it ran: the search and every point it probed."""

    search: IdleSearch
    points: list[Any] = field(default_factory=list)


def search(
    maximum: float,
    parallel: int,
    probe_round: Callable[[list[float]], list[Any]],
    alive: Callable[[Any], bool],
) -> Search:
    """Run an idle-time search: each round's idle times probed at once by `probe_round`,
    which returns one point per idle time; `alive` reads a point."""
    result = Search(IdleSearch(maximum, parallel=parallel, first=1.0))
    while times := result.search.next_round():
        points = probe_round(times)
        result.points += points
        result.search.record({t: alive(p) for t, p in zip(times, points, strict=True)})
    return result


def tcp_round(
    lab: Lab, server: str, port: int, app_timeout: float, ports: Ports
) -> Callable[[list[float]], list[TcpPoint]]:
    """One round of the TCP search: two sessions per idle time (client first, server first)."""

    def run(times: list[float]) -> list[TcpPoint]:
        probes = [IdleProbe(port, t, app_timeout, sport=ports.one(), label=f"tcp {t:g}s") for t in times]
        probes += [
            IdleProbe(port, t, app_timeout, sport=ports.one(), label=f"tcp push {t:g}s", push=True)
            for t in times
        ]
        results = run_probes(lab, CLIENT, server, probes)
        n = len(times)
        return [TcpPoint(t, results[i], results[n + i]) for i, t in enumerate(times)]

    return run


def udp_round(
    lab: Lab, server: str, port: int, mode: str, app_timeout: float, ports: Ports
) -> Callable[[list[float]], list[Any]]:
    """One round of a UDP search (`mode` outbound or bidirectional)."""

    def run(times: list[float]) -> list[Any]:
        probes = [
            UdpProbe(port, t, mode, app_timeout, sport=ports.one(), label=f"udp {mode} {t:g}s") for t in times
        ]
        return run_udp_probes(lab, CLIENT, server, probes)

    return run


# --- what the device does at expiry ---------------------------------------------------
def _rsts(
    segments: list[TcpSegment], to_port: int | None = None, from_port: int | None = None
) -> list[TcpSegment]:
    return [
        s
        for s in segments
        if "R" in s.flags
        and (to_port is None or s.dport == to_port)
        and (from_port is None or s.sport == from_port)
    ]


def nat_map(sides: Sides, port: int) -> dict[int, tuple[str, int]]:
    """Client source port -> the address and port the server saw for it: the SYN's sequence
    number is the same on both sides of a NAT (it rewrites addresses and ports only)."""
    outside = {s.seq: (s.src, s.sport) for s in sides.outside if s.flags == "S" and s.dport == port}
    return {
        s.sport: outside[s.seq]
        for s in sides.inside
        if s.flags == "S" and s.dport == port and s.seq in outside
    }


def expiry(points: list[TcpPoint], sides: Sides, port: int, server_log: Proc) -> dict[str, Any]:
    """At expiry, from the client-first sessions that died: an RST the device sent towards
    the client (captured arriving at the client before any RST left the server) and towards
    the server (captured arriving at the server before any RST left the client: the client
    aborts a session that failed, later); whether each receiver accepted it (RFC 5961): the
    client's app was reset, the server's app logged ECONNRESET."""
    mapped = nat_map(sides, port)
    errors = [e for e in server_events(server_log) if e["event"] == "error" and e.get("errno") == ECONNRESET]
    reset_peers = {e.get("peer") for e in errors}
    to_client = to_server = accepted_client = accepted_server = 0
    flows = []
    for point in points:
        if point.alive or point.client_first.outcome == "delivered":
            continue
        sport = point.client_first.sport
        far = mapped.get(sport)
        from_server = _rsts(sides.outside, from_port=port, to_port=far[1] if far else None)
        at_client = _rsts(sides.inside, to_port=sport, from_port=port)
        from_client = _rsts(sides.inside, from_port=sport, to_port=port)
        at_server = _rsts(sides.outside, from_port=far[1], to_port=port) if far else []
        device_to_client = bool(at_client) and (not from_server or at_client[0].time < from_server[0].time)
        device_to_server = bool(at_server) and (not from_client or at_server[0].time < from_client[0].time)
        client_reset = point.client_first.outcome == "reset"
        server_reset = far is not None and f"{far[0]}:{far[1]}" in reset_peers
        to_client += device_to_client
        to_server += device_to_server
        accepted_client += device_to_client and client_reset
        accepted_server += device_to_server and server_reset
        flows.append(
            {
                "idle_s": point.idle,
                "client_port": sport,
                "seen_by_server_as": f"{far[0]}:{far[1]}" if far else None,
                "client_outcome": point.client_first.outcome,
                "device_rst_to_client": device_to_client,
                "device_rst_to_server": device_to_server,
                "client_reset": client_reset,
                "server_logged_reset": server_reset,
            }
        )
    kind: str | None = {
        (True, True): "rst-both",
        (True, False): "rst-client",
        (False, True): "rst-server",
    }.get((to_client > 0, to_server > 0), "silent")
    if not flows:  # no session died where the client spoke first (loose pick-up re-opens them)
        kind = None
    acceptable = {
        "client": (accepted_client == to_client) if to_client else None,
        "server": (accepted_server == to_server) if to_server else None,
    }
    return {"expiry": kind, "rst_acceptable": acceptable, "expired_sessions": flows}


# --- a mid-stream segment without a session ------------------------------------------
def crossed(sent: list[TcpSegment], far: list[TcpSegment], sport: int, dport: int, inbound: bool) -> bool:
    """Whether the hand-made segment from `sport` to `dport` (captured where it was sent)
    is captured beyond the device: the same sequence number towards the same port, and the
    same address on the side a NAT does not rewrite (the destination of an outbound
    segment, the source of an inbound one)."""
    mine = [s for s in sent if s.sport == sport and s.dport == dport and "R" not in s.flags]
    return any(
        f.seq == m.seq and f.dport == dport and (f.src == m.src if inbound else f.dst == m.dst)
        for m in mine
        for f in far
    )


def midstream(
    lab: Lab, phase: Callable[[str], Any], client_ip: str, server_ip: str, port: int, ports: Ports
) -> dict[str, Any]:
    """An ACK with data-less payload for a connection the device never saw, from inside to
    the server's port and from outside to the client's address: "admitted" when the capture
    beyond the device holds it (loose pick-up), else "dropped".

    Absence takes a window: the captures run until both segments crossed or CROSSING_WAIT
    passed since the second was sent. On a busy machine a segment that crossed took longer
    than the time the next send and the captures' stop take (0.16 s: a loose pick-up
    firewall's inside segment judged dropped, run 20261203-023428)."""
    inside_port, outside_port = ports.one(), ports.one()

    def verdict(seen: Any) -> dict[str, str]:
        admitted = {
            "inside": crossed(seen.inside, seen.outside, inside_port, port, False),
            "outside": crossed(seen.outside, seen.inside, outside_port, port, True),
        }
        return {side: "admitted" if ok else "dropped" for side, ok in admitted.items()}

    with phase("midstream") as sides:
        send_segment(lab, CLIENT, client_ip, server_ip, inside_port, port, "A")
        send_segment(lab, SERVER, server_ip, client_ip, outside_port, port, "A")
        with contextlib.suppress(LabTimeout):
            wait_until(lambda: "dropped" not in verdict(sides()).values(), CROSSING_WAIT, "both to cross")
    return {"value": verdict(sides()), "ports": {"inside": inside_port, "outside": outside_port}}


# --- what the device's own table says -------------------------------------------------
def quiet_spans(points: list[Any]) -> dict[int, tuple[float, float]]:
    """Client source port -> (last packet, end of the idle time) of each probe session of a
    search: while it idles the device's entry for it counts down from that last packet
    (a TCP point's two sessions; a UDP probe's push datagram)."""
    spans: dict[int, tuple[float, float]] = {}
    for point in points:
        results = [point.client_first, point.server_first] if isinstance(point, TcpPoint) else [point]
        for r in results:
            idle = r.probe.idle
            if r.sport and r.wall_start:
                spans[r.sport] = (r.wall_start, r.wall_start + idle)
    return spans


def table_timeouts(
    snapshots: list[dict[str, Any]], proto: str, port: int, spans: dict[int, tuple[float, float]]
) -> dict[str, float]:
    """What the device's table says the probes' sessions to `port` count down from: TCP
    established (seen both ways); UDP unreplied and replied (seen both ways). A reading of
    T s left at time t, for a session idle since its last packet at t0 (`spans`), says
    T + 0.5 + (t - t0): the table shows whole seconds, rounded down, so +0.5 centres the
    reading; t is the middle of the read. The median over every reading taken while the
    session idled, to 0.1 s: it holds however late a busy machine reads the table."""
    said: dict[str, list[float]] = {}
    for snap in snapshots:
        taken = (snap.get("started", snap.get("time", 0.0)) + snap.get("time", 0.0)) / 2
        for row in snap["sessions"]:
            if row.get("proto") != proto or row.get("dport") != port or row.get("timeout") is None:
                continue
            span = spans.get(row.get("sport") or 0)
            if span is None or not span[0] < taken < span[1]:
                continue  # not a probe's session idling: its last packet is not known
            if proto == "tcp":  # an entry seen one way only (a loose device picking up a
                # dead probe's late data mid-stream: 119 s here) says nothing of the timeout
                replied = "UNREPLIED" not in row.get("flags", ())
                kind = "established" if row.get("state") == "ESTABLISHED" and replied else None
            else:
                kind = "unreplied" if "UNREPLIED" in row.get("flags", ()) else "replied"
            if kind is not None:
                said.setdefault(kind, []).append(int(row["timeout"]) + 0.5 + taken - span[0])
    return {kind: round(statistics.median(values), 1) for kind, values in said.items()}


# --- FTP through the device -------------------------------------------------------------
def announced(text: str) -> str | None:
    """The address a PORT command announces (h1,h2,h3,h4,p1,p2), or None."""
    words = text.split()
    if len(words) != 2 or words[0].upper() != "PORT":
        return None
    parts = words[1].split(",")
    return ".".join(parts[:4]) if len(parts) == 6 else None


def ftp_verdicts(
    records: list[dict[str, Any]], port_commands: list[str], client_ip: str, inbound_ok: bool
) -> dict[str, Any]:
    """Active (PORT) and passive (PASV) downloads through the device: "works" when the file
    arrived whole. An ALG: active works although the device refuses a new inbound session
    to the client otherwise. PORT rewritten: what the server received announces another
    address than the client's own (a NAT's helper rewrote it)."""
    by_mode = {r["mode"]: r for r in records}
    works = {mode: by_mode[mode].get("outcome") == "ok" for mode in by_mode}
    addresses = [a for a in (announced(c) for c in port_commands) if a]
    return {
        "active": "works" if works.get("PORT") else "fails",
        "passive": "works" if works.get("PASV") else "fails",
        "alg": bool(works.get("PORT")) and not inbound_ok,
        "port_rewritten": (any(a != client_ip for a in addresses) if addresses else None),
        "announced_as_seen_by_server": addresses,
        "inbound_session_to_client": "admitted" if inbound_ok else "refused",
    }


# --- capacity --------------------------------------------------------------------------
def capacity_verdicts(
    held: list[dict[str, Any]], bound: int, rate: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """RFC 9411's terms, from the clients' records: concurrent TCP sessions held (every
    session opened, echoed and kept open together, up to `bound`), and new sessions per
    second (completed sessions over the load's wall time)."""
    ok = sum(1 for r in held if r.get("data_ok"))
    done = sum(1 for r in rate if r.get("data_ok"))
    return {
        "sessions": ok,
        "bound": bound,
        "bound_reached": ok >= bound,
        "new_per_s": round(done / seconds, 1) if seconds > 0 else None,
        "rate_sessions": len(rate),
        "rate_completed": done,
    }


# --- latency through the device ---------------------------------------------------------
def transit(sides: Sides, port: int) -> dict[str, Any]:
    """The time the device takes to pass a packet, from captures on both sides of it (one
    clock; at its own ports, `Characterization._phase`'s `at_device`, so that the lab's
    switches, whose userspace datapath stalls while another lab is built, are not in the
    way): each session's SYN from the inside capture to the outside one, and its SYN-ACK
    back (matched by sequence number, which a NAT keeps). Medians in ms, and how many
    handshakes they come from."""

    def median(values: list[float]) -> float | None:
        ordered = sorted(values)
        return round(1000 * ordered[len(ordered) // 2], 3) if ordered else None

    syn_out = {s.seq: s.time for s in sides.outside if s.flags == "S" and s.dport == port}
    synack_out = {s.seq: s.time for s in sides.outside if s.flags == "SA" and s.sport == port}
    forward = [
        syn_out[s.seq] - s.time
        for s in sides.inside
        if s.flags == "S" and s.dport == port and s.seq in syn_out
    ]
    back = [
        s.time - synack_out[s.seq]
        for s in sides.inside
        if s.flags == "SA" and s.sport == port and s.seq in synack_out
    ]
    one_way = [median(forward), median(back)]
    known = [v for v in one_way if v is not None]
    return {
        "latency_added_ms": round(sum(known) / len(known), 3) if known else None,
        "client_to_server_ms": one_way[0],
        "server_to_client_ms": one_way[1],
        "handshakes": min(len(forward), len(back)),
    }
