"""S6 (SCENARIOS.md): know your session device, proven on the lab's own firewall.

   inside 10.0.1.0/24                                 outside 10.0.2.0/24
     ci 10.0.1.10 --- si ---[dut-in  dut  dut-out]--- so ---+-- srv  10.0.2.10
                             10.0.1.1      10.0.2.1          +-- stun 10.0.2.20, 10.0.2.21

S6 measures how a session device behaves, from traffic, for any device between an inside
and an outside network: the TCP established idle timeout (parallel sessions, then
bisection, to 1 s or 2 %), what happens at expiry, a mid-stream ACK without a session
from each side; UDP lifetimes refreshed from inside only and with traffic both ways; NAT
mapping and filtering (RFC 5780 discovery), hairpinning, port preservation; FTP through
it; capacity. Proven first on the lab's own firewall in known configurations: the
profile must equal the configuration (timeouts within the search's resolution, and what
the firewall's own table says).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from lab.characterize.findings import show
from lab.characterize.profile import requirements
from lab.characterize.run import Characterization
from lab.characterize.target import Bounds, Target
from lab.config import FirewallPolicy, Helper, TimeoutRule
from testcases.common import S6_PARALLEL, dashed

LAB_TOPOLOGY = "s6"
CLIENT = "10.0.1.10"
# Short lab timeouts so a profile takes about a minute; the search probes up to 10 s.
BOUNDS = Bounds(tcp_max_s=10, udp_max_s=10, parallel=S6_PARALLEL, app_timeout_s=1.5, capacity_sessions=100)
TOLERANCE_S = 0.3  # a session's idle time is the client's; the firewall's timer starts at the last packet


@dataclass(frozen=True)
class Known:
    """A firewall configuration and what its profile must say (dotted finding -> value;
    a float: a timeout the bracket must hold)."""

    name: str
    policy: FirewallPolicy
    probes: tuple[str, ...]
    expected: dict[str, Any] = field(default_factory=dict)


SHORT = FirewallPolicy(tcp_timeout=4, udp_timeout=3, udp_stream_timeout=6)
PER_PORT = 9100  # a service with a timeout of its own (the policy's `timeouts`), searched apart
KNOWN = [
    Known(
        "short timeouts",
        replace(SHORT, timeouts=(TimeoutRule(6, port=PER_PORT),)),
        ("tcp", "udp", "nat", "ftp", "capacity"),
        {
            "tcp.idle_timeout_s": 4.0,
            f"tcp.idle_timeout_s[port {PER_PORT}]": 6.0,
            "tcp.expiry": "silent",
            "tcp.midstream_ack": {"inside": "dropped", "outside": "dropped"},
            "udp.lifetime_outbound_s": 3.0,
            "udp.lifetime_bidirectional_s": 6.0,
            "nat.mapping": "no-nat",
            "ftp.active": "fails",  # the data session from outside: a new inbound session, denied
            "ftp.passive": "works",
            "ftp.alg": False,
            "ftp.port_rewritten": False,
            "capacity.sessions": BOUNDS.capacity_sessions,
        },
    ),
    Known(
        "longer timeouts",
        replace(SHORT, tcp_timeout=7, udp_timeout=2, udp_stream_timeout=5),
        ("tcp", "udp"),
        {"tcp.idle_timeout_s": 7.0, "udp.lifetime_outbound_s": 2.0, "udp.lifetime_bidirectional_s": 5.0},
    ),
    Known(
        "loose pick-up",
        replace(SHORT, loose_pickup=True),
        ("tcp",),
        # the client's own segment re-opens an expired session; the server's is a new inbound one
        {"tcp.idle_timeout_s": 4.0, "tcp.midstream_ack": {"inside": "admitted", "outside": "dropped"}},
    ),
    Known(
        "RST at expiry",
        replace(SHORT, reset_on_expiry=True),
        ("tcp",),
        {
            "tcp.idle_timeout_s": 4.0,
            "tcp.expiry": "rst-both",
            "tcp.rst_acceptable": {"client": True, "server": True},
        },
    ),
    Known(
        "masquerade with the FTP helper",
        replace(SHORT, snat=True, helpers=(Helper(21),)),
        ("nat", "ftp"),
        {
            "nat.mapping": "endpoint-independent",
            "nat.filtering": "address-and-port-dependent",
            "nat.port_preservation": True,
            "ftp.active": "works",
            "ftp.alg": True,
            "ftp.port_rewritten": True,
        },
    ),
    Known(
        "full cone",
        replace(SHORT, snat=True, full_cone=CLIENT),
        ("nat",),
        {"nat.mapping": "endpoint-independent", "nat.filtering": "endpoint-independent"},
    ),
    Known(
        "FTP helper without NAT",
        replace(SHORT, helpers=(Helper(21),)),
        ("ftp",),
        {"ftp.active": "works", "ftp.passive": "works", "ftp.alg": True, "ftp.port_rewritten": False},
    ),
]


def holds(value: Any, wanted: Any, resolution: float) -> bool:
    """A finding equals the configuration: a bracket [low, high] holds a timeout and is
    no wider than the search's resolution; anything else is equal."""
    if isinstance(wanted, float):
        low, high = value
        return (
            high is not None
            and low - TOLERANCE_S <= wanted <= high + TOLERANCE_S
            and high - low <= resolution
        )
    return bool(value == wanted)


@pytest.mark.ports(1000)
@pytest.mark.parametrize("known", KNOWN, ids=lambda k: dashed(k.name))
def test_profile_equals_configuration(lab, case, known):
    """The profile of the lab's own firewall equals its configuration"""
    firewall = lab.node("dut")
    case.keep(firewall.apply_policy(known.policy), "the firewall's ruleset")
    target = Target(policy=known.policy, name=f"the lab's firewall ({known.name})")
    per_port = tuple(int(k.split()[-1].rstrip("]")) for k in known.expected if "[port" in k)
    bounds = replace(BOUNDS, probes=known.probes, tcp_ports=per_port)
    profile = Characterization(lab, firewall, target, bounds, case.path, case.ports).run()
    case.keep(case.path / "profile.md", "the profile (markdown)")
    case.keep(case.path / "profile.json", "the profile (data)")
    for caption, path in profile.figures.items():
        case.keep(case.path / path, caption)
    found = dict(profile.findings())
    case.figure("profile", {key: show(key, finding) for key, finding in found.items() if finding.measured})
    wrong = []
    for key, wanted in known.expected.items():
        finding = found[key]
        resolution = max(1.0, 0.02 * (wanted if isinstance(wanted, float) else 0)) + 2 * TOLERANCE_S
        if not holds(finding.value, wanted, resolution):
            wrong.append(
                f"{key}: measured {finding.value}, configured {wanted} (evidence {finding.evidence})"
            )
    assert not wrong, "; ".join(wrong)
    # the firewall's own table corroborates the timeouts the traffic found (it counts down from them)
    for key, wanted in known.expected.items():
        if not key.startswith(("tcp.idle_timeout_s", "udp.lifetime")):
            continue
        says = found[key].probe.get("table_says_s")
        if isinstance(wanted, float):
            says = says.get("established") if isinstance(says, dict) else says
            assert says is not None and abs(says - wanted) <= 1, (
                f"{key}: the table says {says} s, configured {wanted}"
            )
    if "tcp" in known.probes:  # what the firewall adds to a packet's way (captured at its own ports)
        latency = found["capacity.latency_added_ms"]
        assert latency.measured and 0 < latency.value < 20, (
            f"latency added {latency.value} ms ({latency.probe})"
        )
    rows = requirements(profile)
    if found["nat.mapping"].value == "no-nat":  # RFC 4787/5382 bind NATs: a plain firewall is not one
        nat_rows = [r for r in rows if r.rfc in ("RFC 4787", "RFC 5382")]
        assert {r.verdict for r in nat_rows} == {"not applicable"}, [(r.req, r.verdict) for r in nat_rows]
    case.figure("requirements", {f"{r.rfc} {r.req} ({r.finding})": r.verdict for r in rows})
