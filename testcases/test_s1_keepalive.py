"""S1, session idle timeout (SCENARIOS.md): the application's fix d, and the service direction.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
A client opens TCP to the server, exchanges data, stays idle for I seconds, then sends
again (idle probes, testcases/s1_common.py).

- Fix d: keepalive (TCP keepalive or an application heartbeat with period < T): the
  session survives any idle time.
- Service direction (6.4): when the server speaks first after the idle period (a push),
  the first segment after idle comes from outside; loose pick-up under a default-deny
  policy does not save it, keepalive does.
"""

from __future__ import annotations

import pytest

from lab.traffic import server_events
from testcases.common import dashed
from testcases.s1_common import (
    ECHOES,
    SERVICE,
    STRICT,
    SWEEPS,
    T,
    assert_as_expected,
    assert_kept_alive,
    data_segments,
    run_sweep,
)

# This module's lab, every S1 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up (the s2-server link can become a WAN link).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY, ECHO_SERVERS = "s1", {"wan_delay": "0ms"}, STRICT, ECHOES


@pytest.mark.parametrize("keepalive", ["tcp keepalive", "heartbeat"], ids=dashed)
def test_fix_d_keepalive_survives_idle(lab, fw, servers, case, collected, keepalive):
    """Fix d: application keepalive (period < T) keeps the session through any idle time"""
    run = run_sweep(lab, fw, case, SWEEPS[f"fix d: {keepalive}"], collected)
    case.figure("outcomes", assert_as_expected(run))
    if keepalive == "heartbeat":
        case.figure("heartbeats sent", assert_kept_alive(run, run.results))
    else:
        probes = assert_kept_alive(run, run.results, tcp_keepalive=T // 2)
        case.figure("keepalive probes that crossed the firewall while idle (capture)", probes)


@pytest.mark.parametrize("fix", ["no fix", "loose pick-up", "tcp keepalive"], ids=dashed)
def test_service_direction_server_push(lab, fw, servers, case, collected, fix):
    """Service direction: the server speaks first after idle; loose pick-up cannot save it, keepalive can"""
    run = run_sweep(lab, fw, case, SWEEPS[f"push: {fix}"], collected)
    case.figure("outcomes", assert_as_expected(run))
    server = lab.ip("server")
    pushed = {}
    for r in run.results:
        push = [e for e in server_events(servers["server"], r.client) if e["event"] == "push"]
        assert push, f"the server never pushed to {r.client} (server log)"
        out = data_segments(run.outside, server, SERVICE, r.wall_start + r.probe.idle - 0.05)
        into = data_segments(run.inside, server, SERVICE, r.wall_start + r.probe.idle - 0.05)
        out = [s for s in out if s.dport == r.sport]
        into = [s for s in into if s.dport == r.sport]
        pushed[f"idle {r.probe.idle:g}s"] = {"reached the firewall": len(out), "left it": len(into)}
        assert out, (
            f"idle {r.probe.idle:g}s: the pushed segment never reached the firewall ({run.outside.path})"
        )
        if r.outcome == "hung":
            assert into == [], (
                f"idle {r.probe.idle:g}s: pushed data crossed the firewall, yet the client hung"
            )
    case.figure("the server's pushed segments at the firewall (captures)", pushed)
    if fix == "loose pick-up":
        drops = fw.counters()
        case.figure("drops by reason", drops)
        assert drops["drop_denied"] >= 1, (
            f"loose pick-up makes the pushed segment a new session from outside, which the "
            f"default-deny policy drops: {drops}"
        )
