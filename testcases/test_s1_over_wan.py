"""S1, session idle timeout (SCENARIOS.md): the failure and fix c over a WAN.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
A client opens TCP to the server, exchanges data, stays idle for I seconds, then sends
again (idle probes, testcases/s1_common.py).

The server behind a WAN link of 50 ms RTT (the lab's impairment element on the
s2-server link): idle past T still drops the next segment and the application hangs;
with fix c both ends reset at expiry, the server one and a half RTTs later.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from testcases.s1_common import (
    ECHOES,
    IDLES,
    STRICT,
    SWEEPS,
    Run,
    Sweep,
    assert_as_expected,
    assert_expired_and_hung,
    check_reset_at_expiry,
    run_sweep,
)

# This module's lab, every S1 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up (the s2-server link can become a WAN link).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY, ECHO_SERVERS = "s1", {"wan_delay": "0ms"}, STRICT, ECHOES


WAN_RTT = 0.050  # s: the WAN cases' round trip between the firewall and the server
WAN_SWEEPS = {
    name: Sweep(
        f"{name}, {WAN_RTT * 1000:g} ms RTT",
        SWEEPS[name].policy,
        tuple(replace(s, label=f"{s.label}, {WAN_RTT * 1000:g} ms RTT") for s in SWEEPS[name].series),
    )
    for name in ("no fix", "fix c")
}


def min_rtt(lab, count: int = 20) -> float:
    """The client's smallest ping RTT to the server (s): the path's own delay, which the
    machine's load only adds to (a median taken under another lab's load moved by 4 ms).
    The first ping is left out: a new delay reaches the element as a datagram it reads
    while that ping may be crossing (one came back after 27.9 ms of a new 50 ms)."""
    argv = ["ping", "-n", "-c", str(count + 1), "-i", "0.01", "-W", "1", lab.ip("server")]
    out = lab.run("client", argv)
    return min(float(t) for seq, t in re.findall(r"icmp_seq=(\d+) .*time=([\d.]+)", out) if seq != "1") / 1000


@pytest.fixture
def wan(lab, fw, case):
    """For this case the server is behind a WAN link: the s2-server link delays each
    direction by half of WAN_RTT (the lab's impairment element); the RTT is measured before
    and after, and the link goes back to 0 ms after the case."""
    lan = min_rtt(lab)
    lab.impair("server", "s2", delay=f"{WAN_RTT * 500:g}ms")
    try:
        wan_rtt = min_rtt(lab)
        case.figure(
            "client-server RTT, LAN then WAN (ms, ping minimum)",
            [round(lan * 1000, 2), round(wan_rtt * 1000, 2)],
        )
        added = (wan_rtt - lan) * 1000
        assert abs(added - WAN_RTT * 1000) <= 0.5 + 0.02 * WAN_RTT * 1000, (
            f"the WAN link added {added:.2f} ms to the RTT, configured {WAN_RTT * 1000:g} ms (links.json)"
        )
        yield wan_rtt
    finally:
        lab.impair("server", "s2", delay="0ms")


def handshake_rtts(run: Run, server: str) -> list[float]:
    """Each probe's SYN to SYN-ACK time on the firewall's outside (ms): the WAN's RTT."""
    segments = run.outside.segments()
    rtts = []
    for r in run.results:
        syn = next(s for s in segments if s.sport == r.sport and s.flags == "S")
        synack = next(s for s in segments if s.src == server and s.dport == r.sport and s.flags == "SA")
        rtts.append(round((synack.time - syn.time) * 1000, 2))
    return rtts


def test_over_wan_failure_idle_past_timeout_hangs(lab, fw, servers, case, collected, wan):
    """Failure over a 50 ms RTT WAN: idle past T still drops the next segment and the application hangs"""
    run = run_sweep(lab, fw, case, WAN_SWEEPS["no fix"], collected)
    case.figure("outcomes", assert_as_expected(run))
    rtts = handshake_rtts(run, lab.ip("server"))
    case.figure("SYN to SYN-ACK on fw-out, per probe (ms)", rtts)
    assert min(rtts) >= WAN_RTT * 1000, f"handshakes faster than the WAN's RTT: {rtts} ({run.outside.path})"
    for idle in IDLES[1:]:
        assert_expired_and_hung(run, servers, run.by_idle(idle), lab.ip("client"))
    delivered = run.by_idle(IDLES[0])
    case.figure(f"idle {IDLES[0]:g}s: echo after (s)", round(delivered.learned_after - IDLES[0], 3))
    assert delivered.learned_after - IDLES[0] >= 0.9 * wan, (
        f"the echo after idle came back in less than the RTT: {delivered.raw}"
    )


def test_over_wan_fix_c_reset_both_ends_at_expiry(lab, fw, servers, case, collected, wan):
    """Fix c over a 50 ms RTT WAN: both ends reset at expiry, the server one and a half RTTs later"""
    run = run_sweep(lab, fw, case, WAN_SWEEPS["fix c"], collected)
    case.figure("outcomes", assert_as_expected(run))
    check_reset_at_expiry(lab, run, servers, case, rtt=wan)
