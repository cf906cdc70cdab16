"""S1, session idle timeout (SCENARIOS.md): the failure, and the firewall's fixes a to c.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
A client opens TCP to the server, exchanges data, stays idle for I seconds, then sends
again (idle probes, testcases/s1_common.py).

- Failure: with I > T the firewall has expired the session; the client's next segment
  (ACK, no SYN) has no entry and is dropped; the client retransmits until its own timeout:
  the application hangs, the server never sees the data.
- Fix a: a longer timeout for that service only (per port); other ports keep the short
  timeout (both shown).
- Fix b: admit a mid-stream ACK with no session (loose pick-up). It works, and it weakens
  the firewall: an unsolicited out-of-state ACK from outside to an allowed port now
  creates a session, where strict mode drops it.
- Fix c: RST both ends at expiry, with sequence numbers the hosts accept (Linux follows
  RFC 5961: exactly the next expected one). Both applications get ECONNRESET at about T
  instead of hanging, and can reconnect.
"""

from __future__ import annotations

from lab.plot import packet_timeline
from testcases.s1_common import (
    ECHOES,
    IDLES,
    LONG_SERVICE,
    SERVICE,
    STRICT,
    SWEEPS,
    T,
    assert_as_expected,
    assert_expired_and_hung,
    assert_recreated,
    check_reset_at_expiry,
    data_segments,
    run_sweep,
    server_saw,
)
from testcases.s1_unsolicited import unsolicited_ack

# This module's lab, every S1 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up (the s2-server link can become a WAN link).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY, ECHO_SERVERS = "s1", {"wan_delay": "0ms"}, STRICT, ECHOES


def test_failure_idle_past_timeout_hangs(lab, fw, servers, case, collected):
    """Failure: idle past the timeout, the next segment is dropped and the application hangs"""
    run = run_sweep(lab, fw, case, SWEEPS["no fix"], collected)
    case.figure("outcomes", assert_as_expected(run))
    client = lab.ip("client")
    believed = {}
    for idle in IDLES[1:]:
        r = run.by_idle(idle)
        assert_expired_and_hung(run, servers, r, client)
        # While the client hangs, both ends still believe the session is up.
        hang = (r.wall_start + idle + 0.3, r.wall_start + r.learned_after - 0.3)
        server_states = set(run.sockets.states("server", r.sport, *hang))
        client_states = set(run.sockets.states("client", r.sport, *hang, local=True))
        believed[f"idle {idle:g}s"] = {"server": sorted(server_states), "client": sorted(client_states)}
        assert server_states == {"ESTAB"}, (
            f"idle {idle:g}s: the server's socket should stay ESTABLISHED while the client hangs, "
            f"ss showed {server_states or 'nothing'} (sockets.json)"
        )
        assert client_states == {"ESTAB"}, (
            f"idle {idle:g}s: client socket states {client_states} (sockets.json)"
        )
    case.figure("socket state at both ends while the client hangs (ss)", believed)
    drops = fw.counters()
    case.figure("drops by reason", drops)
    sent = sum(len(data_segments(run.inside, client, run.by_idle(i).sport, 0)) for i in IDLES[1:])
    assert drops["drop_invalid"] >= 2, (
        f"the firewall's invalid-drop counter should count the dropped segments: {drops}"
    )
    assert drops["drop_invalid"] <= sent + 2 * len(IDLES), (
        f"the counter ({drops}) counts more than this case's {sent} captured data segments (and their ACKs)"
    )
    worst = run.by_idle(IDLES[-1])
    case.figure("application learned after (s)", round(worst.learned_after, 2))
    packet_timeline(
        {"server side (fw-out)": run.outside.segments(), "client side (fw-in)": run.inside.segments()},
        (client, worst.sport),
        worst.wall_start,
        {
            f"timeout T={T}s": worst.wall_start + T,
            "send after idle": worst.wall_start + worst.probe.idle,
            "app gives up": worst.wall_start + worst.learned_after,
        },
        case.plot_path(
            "timeline",
            "packet timeline of the failure: the client's segment and its "
            "retransmissions enter the firewall and never leave it",
        ),
        f"idle {worst.probe.idle:g}s > T={T}s: segments in (fw-in) and out (fw-out) of the firewall",
    )


def test_fix_a_longer_timeout_for_one_service(lab, fw, servers, case, collected):
    """Fix a: a longer timeout for one service port; another port still expires"""
    run = run_sweep(lab, fw, case, SWEEPS["fix a"], collected)
    case.figure("outcomes", assert_as_expected(run))
    for idle in IDLES:
        r = run.by_idle(idle, LONG_SERVICE)
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    for idle in IDLES[1:]:
        assert_expired_and_hung(run, servers, run.by_idle(idle, SERVICE), lab.ip("client"))
    # the first reading with every session of both ports established (a count of entries
    # alone took one with 8080's still SYN_SENT: series 20261203-124106, rep-2)
    first = next(
        (
            snap
            for snap in run.sessions.snapshots
            if all(
                sum(x.dport == port and x.state == "ESTABLISHED" for x in snap.sessions) >= len(IDLES)
                for port in (SERVICE, LONG_SERVICE)
            )
        ),
        None,
    )
    assert first is not None, "no reading of the table held every session of both ports established"
    timeouts = {x.dport: x.timeout for x in first.sessions if x.state == "ESTABLISHED"}
    case.figure("session timeouts in the table at start (s)", timeouts)
    assert timeouts.get(LONG_SERVICE, 0) > T, (
        f"session table shows {timeouts}: port {LONG_SERVICE} should have {10 * T}s"
    )
    assert timeouts.get(SERVICE, T + 1) <= T, (
        f"session table shows {timeouts}: port {SERVICE} should keep {T}s"
    )


def test_fix_b_loose_pickup_delivers(lab, fw, servers, case, collected):
    """Fix b: loose pick-up admits the mid-stream segment and re-creates the session"""
    run = run_sweep(lab, fw, case, SWEEPS["fix b"], collected)
    case.figure("outcomes", assert_as_expected(run))
    for r in run.results:
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    recreated = assert_recreated(run, run.by_idle(IDLES[-1]))
    case.figure("session absent, then re-created by the mid-stream segment at (s)", round(recreated, 2))


def test_fix_b_security_cost(lab, fw, servers, case):
    """Fix b's cost: an unsolicited ACK from outside creates a session in loose mode only"""
    case.figure("unsolicited ACK from outside", unsolicited_ack(lab, fw, case))


def test_fix_c_reset_both_ends_at_expiry(lab, fw, servers, case, collected):
    """Fix c: the firewall resets both ends at expiry; both applications learn at about T"""
    run = run_sweep(lab, fw, case, SWEEPS["fix c"], collected)
    case.figure("outcomes", assert_as_expected(run))
    check_reset_at_expiry(lab, run, servers, case)
    worst = run.by_idle(IDLES[-1])
    packet_timeline(
        {"server side (fw-out)": run.outside.segments(), "client side (fw-in)": run.inside.segments()},
        (lab.ip("client"), worst.sport),
        worst.wall_start,
        {f"timeout T={T}s": worst.wall_start + T},
        case.plot_path(
            "timeline", "packet timeline with RST at expiry: probe, challenge ACK, RST on each side"
        ),
        "RST to both ends at expiry",
    )
