"""S1-UDP, session idle timeout for UDP (SCENARIOS.md S1 "UDP", 6.1): a UDP flow through
the firewall, idle, then the server's datagram to the client.

client (inside) -- fw -- server (outside); the firewall's UDP timeouts are U = 2 s for a
flow that has not become a stream (nf_conntrack_udp_timeout) and S = 4 s for one that has
(nf_conntrack_udp_timeout_stream). A flow (`lab/apps/udp_flow.py`) is refreshed for 2.5 s,
then the client sends `push <I>` and the server answers `pushed` I s later (I = 1, 3, 4.5 s:
below U, between U and S, above S), all flows at once.

What Linux does (nf_conntrack_proto_udp.c, measured here): every datagram, either way,
gives the flow U until it has seen a reply and a datagram comes more than 2 s after its
first one; from then on (ASSURED, a conntrack event) every datagram gives it S. So a flow
answered once and then refreshed only from inside past 2 s is a stream (S): only a flow
never answered, or one whose last datagram came within 2 s, expires at U.

- Failure: past its timeout the server's datagram is captured arriving at fw-out and never
  leaving by fw-in (counted as drop_denied); the client waits in vain.
- NAT rebinding (masquerade, a new mapping after expiry): testcases/test_s1_udp_rebinding.py.
- Fixes: an application keepalive under the timeout that applies; a longer timeout for one
  port (the other keeps U/S).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lab.config import FirewallPolicy, TimeoutRule
from lab.plot import session_timeline
from lab.plot.udp import datagram_timeline, udp_outcome_figure
from lab.results import Case, safe_name
from lab.traffic.udp import UdpFlow, UdpProbeResult, udp_datagrams
from testcases.common import rerun_missing
from testcases.s1_udp_common import APP_TIMEOUT, LONG, LONG_PORT, POLICY, PORT, Run, S, U, run_flows

# Below U, between U and S, above S: 1 s from U and S, and 0.5 s past S (a late answer is
# only later: the margin that matters is to the timeouts the answer must beat).
IDLES = (1.0, 3.0, 4.5)
WARMUP = 2.5  # s of refresh before the push: 0.5 s past the kernel's 2 s

# Every S1 module's lab; the shared `fw` fixture loads the policy (each case starts its UDP server).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY = "s1", {"wan_delay": "0ms"}, POLICY


@dataclass(frozen=True)
class Series:
    """Flows refreshed one way, at every idle time, and the timeout they should get."""

    label: str
    refresh: str  # udp_flow's --refresh
    timeout: float
    warmup: float = WARMUP
    port: int = PORT
    keepalive: float = 0.0

    def expected(self, idle: float) -> str:
        return "delivered" if self.keepalive or idle < self.timeout else "lost"


@dataclass(frozen=True)
class Sweep:
    name: str
    policy: FirewallPolicy
    series: tuple[Series, ...]


SWEEPS = {
    s.name: s
    for s in (
        Sweep(
            "udp: no fix",
            POLICY,
            (
                Series("never answered, refreshed from inside", "inside", U),
                Series("answered once, then refreshed from inside", "replied-once", S),
                Series("answered once, last datagram within 2 s", "replied-once", U, warmup=0.5),
                Series("both ways", "both", S),
            ),
        ),
        Sweep(
            "udp: keepalive",
            POLICY,
            (
                Series(f"fix: never answered, keepalive every {U / 2:g}s", "inside", U, keepalive=U / 2),
                Series(f"fix: both ways, keepalive every {S / 2:g}s", "both", S, keepalive=S / 2),
            ),
        ),
        Sweep(
            "udp: longer timeout for one port",
            POLICY.with_changes(timeouts=(TimeoutRule(LONG, port=LONG_PORT, proto="udp"),)),
            (
                Series(f"fix: both ways, port {LONG_PORT} timeout {LONG}s", "both", LONG, port=LONG_PORT),
                Series(f"fix: both ways, port {PORT} keeps S", "both", S),
            ),
        ),
    )
}


def run_sweep(lab, fw, case: Case, sweep: Sweep, collected: dict[str, Any]) -> Run:
    """Every series of `sweep` at every idle time, at once: each outcome the one predicted,
    the client's margin, the rows collected for the outcome figure, the session table over
    time plotted."""
    flows = [
        UdpFlow(s.port, i, s.refresh, APP_TIMEOUT, case.take_port(), s.label, s.warmup, keepalive=s.keepalive)
        for s in sweep.series
        for i in IDLES
    ]
    run = run_flows(lab, fw, case, sweep.name, sweep.policy, flows)
    keys = ("variant", "idle", "outcome", "learned_after")
    collected[sweep.name] = [
        dict(zip(keys, (r.probe.label, r.probe.idle, r.outcome, r.learned_after), strict=True))
        for r in run.results
    ]
    case.figure("outcomes", assert_outcomes(run, sweep))
    case.figure("client's margin: slowest delivered answer before its wait ended (s)", client_margin(run))
    late = [r for r in run.results if r.probe.idle == IDLES[-1]]
    session_timeline(
        {
            f"{r.probe.label}, idle {r.probe.idle:g}s": [
                (t - r.wall_start, v) for t, v, _ in run.sessions.history(r.sport)
            ]
            for r in late
        },
        S,
        case.plot_path(f"sessions-{safe_name(sweep.name)}", f"{sweep.name}: session-table entries over time"),
        f"{sweep.name}: seconds left of each flow's entry (idle {IDLES[-1]:g}s; 0 s: the client's push)",
    )
    return run


def assert_outcomes(run: Run, sweep: Sweep) -> dict[str, dict[str, str]]:
    """Every flow's outcome is what its series predicts at its idle time."""
    got: dict[str, dict[str, str]] = {}
    for s in sweep.series:
        for idle in IDLES:
            r = run.of(s.label, idle)
            got.setdefault(s.label, {})[f"idle {idle:g}s"] = r.outcome
            assert r.outcome == s.expected(idle), (
                f"{s.label}, idle {idle:g}s (timeout {s.timeout:g}s): expected {s.expected(idle)}, "
                f"got {r.raw} (evidence in {run.folder})"
            )
    return got


def client_margin(run: Run) -> float:
    """The client's timeout margin: how long before its wait would have ended the slowest
    delivered answer came (at least 0.5 s, or a slower run could call it lost)."""
    margin = min(
        r.probe.idle + r.probe.app_timeout - r.learned_after for r in run.results if r.outcome == "delivered"
    )
    assert margin >= 0.5, f"a delivered answer came {margin:.2f} s before the client gave up ({run.folder})"
    return round(margin, 3)


def pushed_at_firewall(run: Run, r: UdpProbeResult, client: str) -> dict[str, int]:
    """The server's `pushed` to this flow: captured arriving (fw-out) and leaving (fw-in)."""
    to = (client, r.sport)
    return {
        "arrived outside": len(run.at("outside", dst=to, data="pushed")),
        "left inside": len(run.at("inside", dst=to, data="pushed")),
    }


def entry_life(run: Run, r: UdpProbeResult) -> tuple[float, float]:
    """How long the flow's entry outlived its last datagram (the push, captured on fw-in):
    (last sampled present, first sampled gone), in seconds after it."""
    push = run.at("inside", src=(r.client.split(":")[0], r.sport), data="push ")[0].time
    history = [(t - push, v) for t, v, _ in run.sessions.history(r.sport) if t > push]
    gone = next(t for t, v in history if v is None)
    present = max((t for t, v in history if v is not None and t < gone), default=0.0)
    return round(present, 2), round(gone, 2)


def test_failure_udp_flow_expires(lab, fw, case, collected):
    """Failure: past its timeout the server's datagram is dropped; which timeout, the kernel decides"""
    sweep = SWEEPS["udp: no fix"]
    run = run_sweep(lab, fw, case, sweep, collected)
    client, ev = lab.ip("client"), f"(evidence in {run.folder})"
    crossing, lives, assured = {}, {}, {}
    for s in sweep.series:
        for idle in IDLES:
            r = run.of(s.label, idle)
            seen = crossing[f"{s.label}, idle {idle:g}s"] = pushed_at_firewall(run, r, client)
            sent = [e for e in udp_datagrams(run.server, f"{client}:{r.sport}") if e["event"] == "send"]
            assert [e["data"] for e in sent if e["data"] == "pushed"] == ["pushed"], f"server log: {sent}"
            assert seen == {"arrived outside": 1, "left inside": r.outcome == "delivered"}, f"{seen} {ev}"
            if r.outcome == "lost":  # a sample is timed when conntrack -L returns: "present" late
                present, gone = lives[f"{s.label}, idle {idle:g}s"] = entry_life(run, r)
                assert gone >= s.timeout - 0.05 and present <= s.timeout + 1.0, (
                    f"{s.label}: the entry lived {present}-{gone}s after the push, "
                    f"expected {s.timeout:g}s {ev}"
                )
        # Which flows became streams, and when: the ASSURED event (read at or after the
        # kernel's moment), from the flow's first datagram (captured on fw-in, kernel time).
        r = run.of(s.label, IDLES[-1])
        first = min(d.time for d in run.at("inside", src=(client, r.sport)))
        marked = [e.stamp for e in run.events if e.sport == r.sport and "ASSURED" in e.flags]
        assured[s.label] = round(marked[0] - first, 2) if marked else None
        if s.timeout == S:  # the first datagram after 2 s, at most one interval (0.5 s) later
            assert marked and 1.99 <= marked[0] - first <= 3.0, f"{s.label}: ASSURED {assured} {ev}"
            # Answered once: the server's one echo was all that came from outside before it.
            answers = [d for d in run.at("outside", dst=(client, r.sport)) if d.time <= marked[0]]
            assert s.refresh == "both" or [d.data for d in answers] == ["echo 0"], (
                f"{s.label}: {answers} {ev}"
            )
        else:
            assert not marked, f"{s.label}: became a stream (ASSURED) {ev}"
    case.figure("the server's pushed at the firewall (captures)", crossing)
    case.figure(
        "entry's life after the push, lost flows (s: last seen, first gone; table every 0.2 s)", lives
    )
    case.figure("became a stream (ASSURED) after the flow's first datagram (s, conntrack events)", assured)
    drops = fw.counters()
    case.figure("drops by reason", drops)
    lost = sum(r.outcome == "lost" for r in run.results)
    assert drops["drop_denied"] == lost and drops["drop_invalid"] == 0, (
        f"{lost} lost pushed, counters {drops}"
    )
    worst = run.of(sweep.series[0].label, IDLES[1])
    gone = worst.wall_start + lives[f"{worst.probe.label}, idle {worst.probe.idle:g}s"][1]
    datagram_timeline(
        {"server side (fw-out)": run.outside, "client side (fw-in)": run.inside},
        {"server side (fw-out)": [(client, worst.sport)], "client side (fw-in)": [(client, worst.sport)]},
        worst.wall_start,
        {
            f"timeout U={U}s": worst.wall_start + U,
            "entry gone (table)": gone,
            "server answers": worst.wall_start + worst.probe.idle,
        },
        case.plot_path(
            "timeline", "datagram timeline of the failure: the server's answer enters and never leaves"
        ),
        f"{worst.probe.label}, idle {worst.probe.idle:g}s > U: into the firewall (fw-out), out of it (fw-in)",
    )


def test_fix_keepalive_under_the_timeout(lab, fw, case, collected):
    """Fix: an application keepalive under the timeout that applies keeps the flow at every idle"""
    sweep = SWEEPS["udp: keepalive"]
    run = run_sweep(lab, fw, case, sweep, collected)
    client, counts = lab.ip("client"), {}
    for r in run.results:
        after, sent = r.wall_start, r.raw["keepalives"]
        crossed = run.at("outside", src=(client, r.sport), data="keep", after=after)
        log = udp_datagrams(run.server, f"{client}:{r.sport}")
        got = [e for e in log if e["data"].startswith("keep") and e["t"] > after]
        counts[f"{r.probe.label}, idle {r.probe.idle:g}s"] = {
            "sent": sent,
            "crossed (fw-out)": len(crossed),
            "server got": len(got),
        }
        assert len(crossed) == len(got) == sent >= int(r.probe.idle / r.probe.keepalive) - 1, counts
        history = [v for t, v, _ in run.sessions.history(r.sport) if after <= t <= after + r.learned_after]
        assert history and None not in history, f"{r.probe.label}: entry left the table while idle: {history}"
    case.figure("keepalives after the push (client, capture, server log)", counts)


def test_fix_longer_timeout_for_one_port(lab, fw, case, collected):
    """Fix: a longer UDP timeout for one port; the other port keeps the short one"""
    sweep = SWEEPS["udp: longer timeout for one port"]
    run = run_sweep(lab, fw, case, sweep, collected)
    left: dict[int, int] = {}
    for r in run.results:  # the most seconds left the table showed once the flow was a stream
        stream = [
            x.timeout
            for snap in run.sessions.snapshots
            for x in snap.sessions
            if x.sport == r.sport and "ASSURED" in x.flags
        ]
        left[r.probe.port] = max([left.get(r.probe.port, 0), *stream])
    case.figure("seconds left in the table once a stream, by port", left)
    assert LONG - 1 <= left[LONG_PORT] <= LONG, f"port {LONG_PORT}: {left} (sessions.json in {run.folder})"
    assert S - 1 <= left[PORT] <= S, f"port {PORT}: {left} (sessions.json in {run.folder})"


def test_udp_outcome_figure(lab, fw, case, collected):
    """Outcome against idle time for every UDP variant"""
    ran_here = rerun_missing(
        collected, SWEEPS, lambda name: run_sweep(lab, fw, case, SWEEPS[name], collected)
    )
    case.figure("sweeps run by this case (not selected on their own)", ran_here)
    rows = [row for name in SWEEPS for row in collected[name]]
    expected = {(s.label, i): s.expected(i) for sw in SWEEPS.values() for s in sw.series for i in IDLES}
    got = {(row["variant"], row["idle"]): row["outcome"] for row in rows}
    assert got == expected, (
        f"outcomes differ from the predictions: {sorted(set(got.items()) ^ set(expected.items()))}"
    )
    table: dict[str, dict[str, str]] = {}
    for (label, idle), outcome in got.items():
        table.setdefault(label, {})[f"idle {idle:g}s"] = outcome
    case.figure("outcome per variant and idle time", table)
    udp_outcome_figure(
        rows,
        {"U (unreplied)": U, "S (stream)": S},
        case.plot_path("outcomes", "UDP: outcome against idle time per variant"),
    )
    (case.path / "outcomes.json").write_text(json.dumps(rows, indent=1))
    case.keep(case.path / "outcomes.json", "the plotted outcomes")
