"""S1, session idle timeout (SCENARIOS.md), over IPv6: the failure and fixes a to d.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds;
the same lab as S1's other modules, its IPv6 plan (fd00:1:<net>::<host>, the topology's
PLAN6). The firewall's ruleset is one `table inet`: its rules and its timeout objects
apply to both families, and so does Linux's TCP (RFC 5961's exact RST included).

The same probes as over IPv4 (testcases/s1_common.py), with fewer sweeps: the failure,
fix a and fix d need the same firewall (a 20 s timeout for port 9000 leaves port 8080 at
T), so their probes run at once, 12 of them; fix b (loose pick-up) and fix c (RST at
expiry) each need their own.

- Failure: idle past T, the client's segment and its retransmissions enter the firewall
  and none leaves; the application learns only from its own timeout; both ends' sockets
  stay ESTABLISHED meanwhile.
- Fix a: port 9000 delivered at every idle time; the session table gives its IPv6
  sessions 20 s where port 8080's have T.
- Fix b: the mid-stream segment re-creates the IPv6 session; and its cost: a crafted
  mid-stream IPv6 ACK from outside, no session behind it, creates a session and reaches the
  published port under loose pick-up, where the strict policy drops it (at fw-out, counted
  as out of state) (testcases/s1_unsolicited.py).
- Fix c: both ends reset at about T; exactly one RST per side, each with its receiver's
  next expected sequence number from the capture.
- Fix d: TCP keepalive or a heartbeat every T/2 keeps the IPv6 session through any idle.
"""

from __future__ import annotations

from dataclasses import replace

from lab.plot import packet_timeline
from testcases.s1_common import (
    ECHOES,
    IDLES,
    LONG_SERVICE,
    SERVICE,
    STRICT,
    SWEEPS,
    Series,
    Sweep,
    T,
    assert_as_expected,
    assert_believed_while_hung,
    assert_expired_and_hung,
    assert_invalid_drops,
    assert_kept_alive,
    assert_recreated,
    assert_timeouts_by_port,
    check_reset_at_expiry,
    run_sweep,
    server_saw,
)
from testcases.s1_unsolicited import unsolicited_ack

# This module's lab, every S1 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up (each echo server listens on both families).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY, ECHO_SERVERS = "s1", {"wan_delay": "0ms"}, STRICT, ECHOES
SIX = 6


def _six(series: Series) -> Series:
    return replace(series, label=f"{series.label}, IPv6")


NO_FIX, LONG, KEEPALIVE, HEARTBEAT = (
    _six(s)
    for s in (
        SWEEPS["no fix"].series[0],
        SWEEPS["fix a"].series[0],
        SWEEPS["fix d: tcp keepalive"].series[0],
        SWEEPS["fix d: heartbeat"].series[0],
    )
)
# The failure, fix a and fix d under fix a's policy (its longer timeout is port 9000's only).
TOGETHER = Sweep("IPv6: no fix, fix a, fix d", SWEEPS["fix a"].policy, (NO_FIX, LONG, KEEPALIVE, HEARTBEAT))
FIX_B, FIX_C = (
    Sweep(f"IPv6: {name}", SWEEPS[name].policy, tuple(_six(s) for s in SWEEPS[name].series))
    for name in ("fix b", "fix c")
)


def test_ipv6_failure_and_fixes_a_and_d(lab, fw, servers, case, collected):
    """IPv6: idle past T hangs; a longer timeout for one port and keepalives under T deliver"""
    run = run_sweep(lab, fw, case, TOGETHER, collected, family=SIX)
    case.figure("outcomes", assert_as_expected(run))
    hung = [r for r in run.of(NO_FIX) if r.probe.idle > T]
    for r in hung:
        assert_expired_and_hung(run, servers, r, run.client)
    case.figure(
        "socket state at both ends while the client hangs (ss)", assert_believed_while_hung(run, hung)
    )
    case.figure("drops by reason", assert_invalid_drops(fw, run, hung))
    for r in run.of(LONG):
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    case.figure(
        "session timeouts in the table at start, IPv6 sessions (s)",
        assert_timeouts_by_port(run, LONG_SERVICE, SERVICE),
    )
    case.figure(
        "keepalive probes that crossed the firewall while idle (capture)",
        assert_kept_alive(run, run.of(KEEPALIVE), tcp_keepalive=T // 2),
    )
    case.figure("heartbeats sent", assert_kept_alive(run, run.of(HEARTBEAT)))


def test_ipv6_fix_b_loose_pickup_delivers(lab, fw, servers, case, collected):
    """IPv6, fix b: loose pick-up admits the mid-stream segment and re-creates the session"""
    run = run_sweep(lab, fw, case, FIX_B, collected, family=SIX)
    case.figure("outcomes", assert_as_expected(run))
    for r in run.results:
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    recreated = assert_recreated(run, run.of(FIX_B.series[0])[-1])
    case.figure("session absent, then re-created by the mid-stream segment at (s)", round(recreated, 2))


def test_ipv6_fix_b_security_cost(lab, fw, servers, case):
    """IPv6, fix b's cost: an unsolicited IPv6 ACK from outside creates a session in loose mode only"""
    case.figure("unsolicited IPv6 ACK from outside", unsolicited_ack(lab, fw, case, family=SIX))


def test_ipv6_fix_c_reset_both_ends_at_expiry(lab, fw, servers, case, collected):
    """IPv6, fix c: the firewall resets both ends at expiry with RSTs Linux accepts (RFC 5961)"""
    run = run_sweep(lab, fw, case, FIX_C, collected, family=SIX)
    case.figure("outcomes", assert_as_expected(run))
    check_reset_at_expiry(lab, run, servers, case)
    worst = run.by_idle(IDLES[-1])
    packet_timeline(
        {"server side (fw-out)": run.outside.segments(), "client side (fw-in)": run.inside.segments()},
        (run.client, worst.sport),
        worst.wall_start,
        {f"timeout T={T}s": worst.wall_start + T},
        case.plot_path(
            "timeline", "IPv6 packet timeline with RST at expiry: probe, challenge ACK, RST on each side"
        ),
        "RST to both ends at expiry, IPv6",
    )
