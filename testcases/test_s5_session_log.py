"""S5 (SCENARIOS.md): the session log.

   inside: srv 10.0.1.10 (echo servers on 80, published, and 5001, not), c1 10.0.1.11
   outside: ext 10.0.2.10 (echo server on 8080), legit .20, attacker .66 (spoofing .166), scanner .77

Every session's start, end, packets, bytes and why it ended, from the firewall's
conntrack events, checked against the captures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lab.capture import Capture, SessionEvents
from lab.packets import TcpSegment
from lab.traffic import SessionLoad, finish_sessions, start_sessions
from testcases.s5_common import ECHOES, INTENT, OUTBOUND

# This module's lab, every S5 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up.
LAB_TOPOLOGY, FIREWALL_POLICY, ECHO_SERVERS = "s5", INTENT, ECHOES

LOG_T = 2  # s: the TCP idle timeout of the session-log case


@dataclass(frozen=True)
class Ending:
    """A group of the session-log case's sessions: how many, and how they end."""

    reason: str
    count: int
    hold: float
    reset: bool


ENDINGS = (
    Ending("FIN", 4, 0.3, False),
    Ending("RST", 2, 0.3, True),
    Ending("timeout", 2, LOG_T + 3, True),  # idle past the timeout; the late RST is dropped
)


def counted(segments: list[TcpSegment], src: str, sport: int, reason: str, end: float) -> dict[str, int]:
    """What the firewall should have counted of one session, from the client-side capture:
    packets and IP bytes each way up to its end; after a timeout, only those before the
    idle gap (what follows finds no session)."""
    mine = sorted((s for s in segments if sport in (s.sport, s.dport)), key=lambda s: s.time)
    mine = [s for s in mine if s.time <= end + 0.01]
    if reason == "timeout":
        gaps = [i for i in range(1, len(mine)) if mine[i].time - mine[i - 1].time >= LOG_T]
        mine = mine[: gaps[0]] if gaps else mine
    out = [s for s in mine if s.src == src]
    back = [s for s in mine if s.src != src]
    return {
        "packets": len(out),
        "bytes": sum(s.ip_len for s in out),
        "reply_packets": len(back),
        "reply_bytes": sum(s.ip_len for s in back),
    }


def test_session_log(lab, fw, servers, case):
    """Session log from conntrack events: each session's span, packets, bytes and end reason"""
    c1, ext = lab.ip("c1"), lab.ip("ext")
    fw.apply_policy(INTENT.with_changes(tcp_timeout=LOG_T, closed_timeout=1))
    loads = {
        e.reason: SessionLoad(
            [f"{ext}:{OUTBOUND}"],
            e.count,
            concurrency=e.count,
            timeout=2.0,
            first_port=case.take_ports(e.count).start,
            hold=e.hold,
            reset=e.reset,
        )
        for e in ENDINGS
    }
    wanted = {
        p: e.reason
        for e in ENDINGS
        for p in range(loads[e.reason].first_port, loads[e.reason].first_port + e.count)
    }
    with (
        SessionEvents(lab, "fw", "session-events") as events,
        Capture(lab, "fw", "fw-in", case.path, "inside-fw-in") as inside,
    ):
        procs = {
            reason: start_sessions(lab, "c1", load, f"sessions-{reason}") for reason, load in loads.items()
        }

        def all_ended() -> bool:
            # Closed sessions expire after 1 s (closed_timeout), idle ones after LOG_T. The
            # kernel's collector removes expired sessions when it comes by (here up to a
            # minute later); a listing of the table removes them at once, with their event.
            fw.sessions()
            ended = {r.sport for r in events.records() if r.end is not None}
            return set(wanted) <= ended

        lab.wait(all_ended, 30, "every session of the case to leave the firewall's table")
        clients = {
            reason: case.note_load(finish_sessions(lab, procs[reason], loads[reason])) for reason in loads
        }
    case.keep(inside.path, "capture, client side (fw-in)")
    case.keep(events.path, "conntrack events")
    for reason, records in clients.items():
        assert all(r["data_ok"] for r in records), f"{reason} sessions failed: {records}"
    log = [r for r in events.records() if r.sport in wanted]
    (case.path / "session-log.json").write_text(json.dumps([r.to_dict() for r in log], indent=1))
    case.keep(case.path / "session-log.json", "session log (one record per session)")
    assert sorted(r.sport for r in log) == sorted(wanted), (
        f"the log has sessions {sorted(r.sport for r in log)}, the client opened {sorted(wanted)}"
    )
    segments = inside.segments()
    rows = []
    for record in log:
        assert record.sport is not None and record.end is not None and record.start is not None
        reason = wanted[record.sport]
        assert record.end_reason == reason, (
            f"session {c1}:{record.sport}: the log says {record.end_reason} (last state "
            f"{record.last_state}), the client ended it by {reason} ({events.path})"
        )
        expected = counted(segments, c1, record.sport, reason, record.end)
        logged = {k: getattr(record, k) for k in expected}
        assert logged == expected, (
            f"session {c1}:{record.sport}: conntrack counted {logged}, the capture shows {expected} "
            f"({inside.path}, {events.path})"
        )
        if reason == "timeout":
            idle = record.end - max(
                s.time for s in segments if s.sport == record.sport and s.time <= record.end
            )
            assert idle >= LOG_T - 0.1, (
                f"session {record.sport} ended after {idle:.2f} s idle (timeout {LOG_T})"
            )
        rows.append(
            {
                "client port": record.sport,
                "start": round(record.start - log[0].start, 2),
                "duration (s)": round(record.end - record.start, 2),
                "packets out/back": f"{record.packets}/{record.reply_packets}",
                "bytes out/back": f"{record.bytes}/{record.reply_bytes}",
                "end": record.end_reason,
            }
        )
    case.figure("session log (conntrack events; counts equal the capture's)", rows)
    case.figure(
        "sessions by end reason", {e.reason: sum(r.end_reason == e.reason for r in log) for e in ENDINGS}
    )
