"""What a `sessionlab try` run shows, computed from its evidence: where the application's
packets stopped (captures on both sides of each firewall), the sessions the firewalls held
(sampled tables), and the verdict (the client's exit status).

Pure functions of recorded data, tested offline (tests/test_try.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.conntrack import Session
from lab.packets import TcpSegment

# A segment as a firewall forwards it: NAT may change addresses and ports, not these.
Signature = tuple[int, int, str, int]


def signature(s: TcpSegment) -> Signature:
    return (s.seq, s.ack, s.flags, s.payload_len)


@dataclass(frozen=True)
class Seen:
    """A segment captured at one point (a firewall's interface)."""

    point: str
    segment: TcpSegment


@dataclass(frozen=True)
class Direction:
    """One direction of the application's flows through the firewalls: what entered
    (`ingress` points), what left (`egress`), and what entered and never left."""

    sender: str  # "client" or "server"
    entered: int
    left: int
    dropped: tuple[Seen, ...]
    last_left: float | None  # time (s from the client's start) of the last segment that left
    last_entered: float | None
    left_times: tuple[float, ...] = ()

    def last_left_before(self, t: float) -> float | None:
        """When the last segment that left before `t` left."""
        return max((x for x in self.left_times if x < t), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments that entered the firewall": self.entered,
            "segments that left it": self.left,
            "entered and never left": len(self.dropped),
            "first of those at (s)": round(self.dropped[0].segment.time, 2) if self.dropped else None,
            "last that left at (s)": None if self.last_left is None else round(self.last_left, 2),
        }


def direction(
    sender: str, ingress: Sequence[Seen], egress: Sequence[Seen], port: int, t0: float
) -> Direction:
    """The `sender`'s segments (client: to `port`; server: from it) at the firewalls'
    ingress points and whether each was seen again at an egress point. Times are made
    relative to `t0`."""

    def ours(seen: Sequence[Seen]) -> list[Seen]:
        picked = [x for x in seen if (x.segment.dport if sender == "client" else x.segment.sport) == port]
        return sorted((Seen(x.point, _shifted(x.segment, t0)) for x in picked), key=lambda x: x.segment.time)

    came, went = ours(ingress), ours(egress)
    dropped = tuple(_unmatched(came, went))
    return Direction(
        sender,
        len(came),
        len(went),
        dropped,
        went[-1].segment.time if went else None,
        came[-1].segment.time if came else None,
        tuple(x.segment.time for x in went),
    )


# A forwarded segment leaves the firewall within this long of entering it (s). Identical
# segments (keepalive probes, retransmissions) are matched one to one, in time order.
FORWARD_WINDOW = (-0.01, 1.0)


def _unmatched(came: Sequence[Seen], went: Sequence[Seen]) -> list[Seen]:
    """The ingress segments no egress segment accounts for."""
    waiting: dict[Signature, list[float]] = {}
    for x in went:
        waiting.setdefault(signature(x.segment), []).append(x.segment.time)
    lost = []
    for x in came:
        times = waiting.get(signature(x.segment), [])
        t = x.segment.time
        match = next((e for e in times if t + FORWARD_WINDOW[0] <= e <= t + FORWARD_WINDOW[1]), None)
        if match is None:
            lost.append(x)
        else:
            times.remove(match)
    return lost


def _shifted(s: TcpSegment, t0: float) -> TcpSegment:
    from dataclasses import replace

    return replace(s, time=s.time - t0)


def where_stopped(client: Direction, server: Direction, firewalls: str) -> list[str]:
    """Sentences saying where the application's packets stopped, from both directions."""
    lines = []
    for d, other in ((client, server), (server, client)):
        who = f"the {d.sender}'s"
        if d.entered == 0:
            lines.append(f"{who} segments never reached {firewalls}")
            continue
        if d.dropped:
            first, last = d.dropped[0], d.dropped[-1]
            points = sorted({x.point for x in d.dropped})
            before = d.last_left_before(first.segment.time)
            after = f" after t={before:.1f} s" if before is not None else ""
            lines.append(
                f"{who} segments reached {', '.join(points)} but did not leave {firewalls}{after}: "
                f"{len(d.dropped)} dropped by the firewall, {_span(first, last)} "
                f"(flags {', '.join(sorted({x.segment.flags for x in d.dropped}))})"
            )
        else:
            lines.append(
                f"all {d.entered} of {who} segments crossed {firewalls} (last at t={d.last_left:.1f} s)"
            )
        # Crossed the firewall, and the other end went quiet: lost beyond it.
        if (
            not d.dropped
            and d.last_left is not None
            and other.last_entered is not None
            and d.last_left > other.last_entered + 1.0
        ):
            peer = "server" if d.sender == "client" else "client"
            lines.append(
                f"{who} segments left {firewalls} until t={d.last_left:.1f} s, but nothing came back "
                f"from the {peer} after t={other.last_entered:.1f} s: lost beyond the firewall, "
                f"on the {peer}'s side"
            )
    return lines


def _span(first: Seen, last: Seen) -> str:
    a, b = first.segment.time, last.segment.time
    return f"at t={a:.1f} s" if f"{a:.1f}" == f"{b:.1f}" else f"t={a:.1f}-{b:.1f} s"


def app_sessions(
    snapshots: Sequence[tuple[str, float, Sequence[Session]]], port: int, t0: float
) -> tuple[list[tuple[float, int]], list[dict[str, Any]]]:
    """From table samples (firewall, wall time, sessions): the count of the application's
    sessions over time (only where it changed) and each session's life: where, first and
    last seen, its states in order, whether it was still there at the end."""
    counts: list[tuple[float, int]] = []
    lives: dict[tuple[Any, ...], dict[str, Any]] = {}
    last_time: dict[str, float] = {}
    current: dict[str, int] = {}  # each firewall's count at its latest sample
    for fw, when, sessions in sorted(snapshots, key=lambda x: x[1]):
        t = round(when - t0, 2)
        mine = [s for s in sessions if port in (s.dport, s.sport)]
        current[fw] = len(mine)
        if not counts or counts[-1][1] != sum(current.values()):
            counts.append((t, sum(current.values())))
        last_time[fw] = t
        for s in mine:
            key = (fw, *s.key)
            life = lives.setdefault(
                key,
                {
                    "firewall": fw,
                    "session": f"{s.proto} {s.src}:{s.sport} -> {s.dst}:{s.dport}",
                    "first seen (s)": t,
                    "states": [],
                },  # fmt: skip
            )
            life["last seen (s)"] = t
            state = s.state or "-"
            if not life["states"] or life["states"][-1] != state:
                life["states"].append(state)
    for life in lives.values():
        life["held at the end"] = life["last seen (s)"] == last_time.get(life["firewall"])
    return counts, sorted(lives.values(), key=lambda x: x["first seen (s)"])


def exit_words(rc: int | None, stopped: bool) -> str:
    """A program's exit as words: `exit 0`, `killed by signal 15`, `stopped by sessionlab`."""
    if rc is None:
        return "still running"
    if stopped:
        return f"stopped by sessionlab (exit {rc})" if rc >= 0 else f"stopped by sessionlab (signal {-rc})"
    return f"exit {rc}" if rc >= 0 else f"killed by signal {-rc}"


def verdict(client_rc: int | None, timed_out: bool) -> tuple[str, int]:
    """The run's verdict and sessionlab's exit status: the client's exit status says it
    (0: passed, exit 0; anything else, or no exit within the limit: failed, exit 1)."""
    if timed_out or client_rc is None:
        return "failed", 1
    return ("passed", 0) if client_rc == 0 else ("failed", 1)


def last_lines(text: str, n: int = 5) -> list[str]:
    return [line for line in text.splitlines() if line.strip()][-n:]
