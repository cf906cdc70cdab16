"""S1, session idle timeout (SCENARIOS.md): a stateful firewall forgets an idle session.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
Each variant runs idle probes with idle times of 0.5 T, 1.5 T and 3 T at once, with
captures on both sides of the firewall and the session table sampled throughout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from lab.capture import Capture, SessionEvents, SessionRecorder
from lab.config import FirewallPolicy, Service, TimeoutRule
from lab.plot import outcome_figure, packet_timeline, session_timeline
from lab.results import Case
from lab.traffic import IdleProbe, ProbeResult, run_probes, send_segment, server_events, start_echo_server

LAB_TOPOLOGY = "s1"
T = 2  # the firewall's TCP idle timeout in this lab (s)
IDLES = (0.5 * T, 1.5 * T, 3 * T)
APP_TIMEOUT = 3.0  # how long the application waits for a reply
SERVICE, LONG_SERVICE, PUBLISHED, UNPUBLISHED = 8080, 9000, 2222, 2223
STRICT = FirewallPolicy(tcp_timeout=T, allow_inbound=(Service(PUBLISHED),))
# Every variant's outcomes, for the one figure that compares them.
OUTCOMES: list[dict[str, Any]] = []


@dataclass
class Sweep:
    results: list[ProbeResult]
    inside: Capture
    outside: Capture
    sessions: SessionRecorder

    def by_idle(self, idle: float, port: int = SERVICE) -> ProbeResult:
        return next(r for r in self.results if r.probe.idle == idle and r.probe.port == port)


@pytest.fixture(scope="module")
def servers(lab):
    return {
        "server": start_echo_server(lab, "server", [SERVICE, LONG_SERVICE], "echo-server"),
        "client": start_echo_server(lab, "client", [PUBLISHED, UNPUBLISHED], "echo-client"),
    }


@pytest.fixture
def fw(lab, servers):
    """The firewall with the strict policy and an empty session table (per-test reset)."""
    node = lab.node("fw")
    node.apply_policy(STRICT)
    node.flush_sessions()
    return node


def sweep(lab, fw, case: Case, variant: str, policy: FirewallPolicy, probes: list[IdleProbe]) -> Sweep:
    """Load `policy`, run `probes` at once with captures and session sampling; keep evidence."""
    case.keep(fw.apply_policy(policy), "ruleset")
    fw.flush_sessions()
    server = lab.ip("server")
    with (
        Capture(lab, "fw", "fw-in", case.path, "inside-fw-in") as inside,
        Capture(lab, "fw", "fw-out", case.path, "outside-fw-out") as outside,
        SessionRecorder(lab, "fw") as sessions,
    ):
        results = run_probes(lab, "client", server, probes)
    case.keep(inside.path, "capture, client side (fw-in)")
    case.keep(outside.path, "capture, server side (fw-out)")
    case.keep(sessions.save(case.path / "sessions.json"), "session table over time")
    (case.path / "probes.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    case.keep(case.path / "probes.json", "probe results")
    case.keep(lab.paths.logs / "echo-server.log", "server log")
    for r in results:
        label = r.probe.label or variant
        OUTCOMES.append(
            {"variant": label, "idle": r.probe.idle, "outcome": r.outcome, "learned_after": r.learned_after}
        )
    case.figure(
        "outcomes", {f"{r.probe.label or r.probe.port} idle {r.probe.idle:g}s": r.outcome for r in results}
    )
    t0 = min(r.wall_start for r in results)
    # An established session's countdown; closing states (TIME_WAIT...) would dwarf it.
    series = {
        f"{r.probe.label or r.probe.port}, idle {r.probe.idle:g}s": [
            (t - t0, v if state == "ESTABLISHED" else None) for t, v, state in sessions.history(r.sport)
        ]
        for r in results
    }
    session_timeline(
        series,
        T,
        case.plot_path("sessions", f"{variant}: session-table entries over time"),
        f"{variant}: remaining timeout of each probe's session (T = {T}s)",
    )
    return Sweep(results, inside, outside, sessions)


def probes_at(port: int = SERVICE, label: str = "", **options: Any) -> list[IdleProbe]:
    return [IdleProbe(port=port, idle=i, app_timeout=APP_TIMEOUT, label=label, **options) for i in IDLES]


def server_saw(servers, result: ProbeResult, data: str) -> bool:
    return any(
        e["event"] == "recv" and e["data"] == data for e in server_events(servers["server"], result.client)
    )


def client_segments(capture: Capture, result: ProbeResult, after: float) -> list:
    """Client-to-server segments of `result`'s session with data, captured after `after`."""
    return [
        s for s in capture.segments() if s.sport == result.sport and s.payload_len > 0 and s.time >= after
    ]


def assert_expired_and_hung(sweep_: Sweep, servers, result: ProbeResult) -> None:
    evidence = f"(captures {sweep_.inside.path.name}, {sweep_.outside.path.name}; server log)"
    assert result.outcome == "hung", (
        f"idle {result.probe.idle}s past T={T}s: expected hung, got {result.raw} {evidence}"
    )
    expected = result.probe.idle + APP_TIMEOUT
    assert expected - 0.2 <= result.learned_after <= expected + 1.5, (
        f"the application should learn only from its own {APP_TIMEOUT}s timeout, at ~{expected:g}s; "
        f"it took {result.learned_after:.2f}s"
    )
    assert not server_saw(servers, result, "after-idle"), (
        f"the server received the segment after idle {evidence}"
    )
    sent = client_segments(sweep_.inside, result, result.wall_start + result.probe.idle - 0.05)
    passed = client_segments(sweep_.outside, result, result.wall_start + result.probe.idle - 0.05)
    assert len(sent) >= 2, (
        f"expected the client's segment and its retransmissions on fw-in, saw {len(sent)} {evidence}"
    )
    assert passed == [], f"{len(passed)} data segments crossed the firewall after expiry {evidence}"


def test_failure_idle_past_timeout_hangs(lab, fw, servers, case):
    """Failure: idle past the timeout, the next segment is dropped and the application hangs"""
    s = sweep(lab, fw, case, "no fix (strict)", STRICT, probes_at())
    assert s.by_idle(IDLES[0]).outcome == "delivered", (
        f"idle below T must be delivered: {s.by_idle(IDLES[0]).raw}"
    )
    for idle in IDLES[1:]:
        assert_expired_and_hung(s, servers, s.by_idle(idle))
    drops = fw.counters()
    case.figure("drops by reason", drops)
    assert drops["drop_invalid"] >= 2, (
        f"the firewall's invalid-drop counter should count the dropped segments: {drops}"
    )
    worst = s.by_idle(IDLES[-1])
    case.figure("application learned after (s)", round(worst.learned_after, 2))
    packet_timeline(
        {"server side (fw-out)": s.outside.segments(), "client side (fw-in)": s.inside.segments()},
        (lab.ip("client"), worst.sport),
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


def test_fix_a_longer_timeout_for_one_service(lab, fw, servers, case):
    """Fix a: a longer timeout for one service port; another port still expires"""
    policy = STRICT.with_changes(timeouts=(TimeoutRule(timeout=10 * T, port=LONG_SERVICE),))
    probes = probes_at(LONG_SERVICE, label=f"fix a: port {LONG_SERVICE} timeout {10 * T}s") + probes_at(
        SERVICE, label=f"fix a: port {SERVICE} default T"
    )
    s = sweep(lab, fw, case, "fix a", policy, probes)
    for idle in IDLES:
        r = s.by_idle(idle, LONG_SERVICE)
        assert r.outcome == "delivered", (
            f"port {LONG_SERVICE} with a {10 * T}s timeout, idle {idle}s: {r.raw}"
        )
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    for idle in IDLES[1:]:
        assert_expired_and_hung(s, servers, s.by_idle(idle, SERVICE))
    first = next(snap for snap in s.sessions.snapshots if snap.sessions)
    timeouts = {x.dport: x.timeout for x in first.sessions if x.state == "ESTABLISHED"}
    case.figure("session timeouts in the table at start (s)", timeouts)
    assert timeouts.get(LONG_SERVICE, 0) > T, (
        f"session table shows {timeouts}: port {LONG_SERVICE} should have {10 * T}s"
    )
    assert timeouts.get(SERVICE, T + 1) <= T, (
        f"session table shows {timeouts}: port {SERVICE} should keep {T}s"
    )


def test_fix_b_loose_pickup_delivers(lab, fw, servers, case):
    """Fix b: loose pick-up admits the mid-stream segment and re-creates the session"""
    s = sweep(lab, fw, case, "fix b: loose pick-up", STRICT.with_changes(loose_pickup=True), probes_at())
    for r in s.results:
        assert r.outcome == "delivered", (
            f"loose pick-up, idle {r.probe.idle}s: {r.raw} (captures in {case.path})"
        )
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    late = s.by_idle(IDLES[-1])
    history = s.sessions.history(late.sport)
    gone = [t for t, v, _ in history if v is None and t > late.wall_start + T]
    back = [t for t, v, _ in history if v is not None and gone and t > gone[0]]
    assert gone and back, (
        f"session table ({case.path / 'sessions.json'}) should show the entry expire and come back"
    )
    case.figure(
        "session absent, then re-created by the mid-stream segment at (s)",
        round(back[0] - late.wall_start, 2),
    )


def test_fix_b_security_cost(lab, fw, servers, case):
    """Fix b's cost: an unsolicited ACK from outside creates a session in loose mode only"""
    client, server = lab.ip("client"), lab.ip("server")
    counts: dict[str, dict[str, int]] = {}
    for mode, policy in (("strict", STRICT), ("loose", STRICT.with_changes(loose_pickup=True))):
        case.keep(fw.apply_policy(policy), f"ruleset, {mode}")
        fw.flush_sessions()
        with (
            Capture(lab, "fw", "fw-in", case.path, f"{mode}-inside-fw-in") as inside,
            SessionEvents(lab, "fw", f"{mode}-session-events", only="NEW") as events,
        ):
            for port in (PUBLISHED, UNPUBLISHED):
                dropped = sum(fw.counters().values())
                send_segment(lab, "server", server, client, 40000 + port, port, "A")

                def verdict(port: int = port, dropped: int = dropped) -> bool:
                    created = [e for e in events.events() if e.event == "NEW" and e.dport == port]
                    return bool(created) or sum(fw.counters().values()) > dropped

                # The firewall's verdict on the segment: a session created, or a drop counted.
                lab.wait(verdict, 5, f"the firewall to admit or drop the ACK to port {port}")
        case.keep(inside.path, f"capture inside, {mode}")
        case.keep(events.path, f"session events, {mode}")
        seen = inside.segments()
        new = [e for e in events.events() if e.event == "NEW" and e.src == server]
        counts[mode] = {"drops": sum(fw.counters().values())}
        for port in (PUBLISHED, UNPUBLISHED):
            counts[mode][f"sessions created, port {port}"] = len([e for e in new if e.dport == port])
            counts[mode][f"ACKs let in, port {port}"] = len(
                [x for x in seen if x.src == server and x.dport == port]
            )
            counts[mode][f"inside host answered, port {port}"] = len(
                [x for x in seen if x.src == client and x.sport == port]
            )
    case.figure("unsolicited ACK from outside", counts)
    ev = f"(captures and session events in {case.path})"
    assert counts["strict"][f"sessions created, port {PUBLISHED}"] == 0, f"strict mode created a session {ev}"
    assert counts["strict"][f"ACKs let in, port {PUBLISHED}"] == 0, f"strict mode let the ACK in {ev}"
    assert counts["loose"][f"sessions created, port {PUBLISHED}"] == 1, (
        f"loose mode should create a session {ev}"
    )
    assert counts["loose"][f"ACKs let in, port {PUBLISHED}"] == 1, f"loose mode should let the ACK in {ev}"
    assert counts["loose"][f"inside host answered, port {PUBLISHED}"] == 1, (
        f"the inside host should answer (RST) {ev}"
    )
    for mode in ("strict", "loose"):
        assert counts[mode][f"sessions created, port {UNPUBLISHED}"] == 0, (
            f"{mode}: unpublished port got a session {ev}"
        )
        assert counts[mode][f"ACKs let in, port {UNPUBLISHED}"] == 0, f"{mode}: unpublished port reached {ev}"


def test_fix_c_reset_both_ends_at_expiry(lab, fw, servers, case):
    """Fix c: the firewall resets both ends at expiry; both applications learn at about T"""
    s = sweep(lab, fw, case, "fix c: RST at expiry", STRICT.with_changes(reset_on_expiry=True), probes_at())
    assert s.by_idle(IDLES[0]).outcome == "delivered", (
        f"idle below T must be delivered: {s.by_idle(IDLES[0]).raw}"
    )
    learned = {}
    for idle in IDLES[1:]:
        r = s.by_idle(idle)
        assert r.outcome == "reset" and r.raw.get("error") == "ECONNRESET", (
            f"idle {idle}s: {r.raw} (agent log)"
        )
        assert T - 0.1 <= r.learned_after <= T + 1.0, (
            f"client reset after {r.learned_after:.2f}s, expected ~{T}s"
        )
        errors = [e for e in server_events(servers["server"], r.client) if e["event"] == "error"]
        assert errors and errors[0]["error"] == "ConnectionResetError", f"server log for {r.client}: {errors}"
        server_after = errors[0]["t"] - r.wall_start
        assert T - 0.1 <= server_after <= T + 1.0, f"server reset after {server_after:.2f}s, expected ~{T}s"
        rsts = [
            x
            for x in s.inside.segments() + s.outside.segments()
            if "R" in x.flags and r.sport in (x.sport, x.dport)
        ]
        assert len(rsts) >= 2, f"expected an RST on each side of the firewall, captured {rsts}"
        learned[f"idle {idle:g}s"] = {"client": round(r.learned_after, 2), "server": round(server_after, 2)}
    case.figure("reset seen after (s)", learned)
    again = run_probes(lab, "client", lab.ip("server"), [IdleProbe(SERVICE, 0.2, APP_TIMEOUT)])[0]
    assert again.outcome == "delivered", f"the application could not reconnect after the reset: {again.raw}"
    worst = s.by_idle(IDLES[-1])
    packet_timeline(
        {"server side (fw-out)": s.outside.segments(), "client side (fw-in)": s.inside.segments()},
        (lab.ip("client"), worst.sport),
        worst.wall_start,
        {f"timeout T={T}s": worst.wall_start + T},
        case.plot_path(
            "timeline", "packet timeline with RST at expiry: probe, challenge ACK, RST on each side"
        ),
        "RST to both ends at expiry",
    )


@pytest.mark.parametrize("keepalive", ["tcp keepalive", "heartbeat"])
def test_fix_d_keepalive_survives_idle(lab, fw, servers, case, keepalive):
    """Fix d: application keepalive (period < T) keeps the session through any idle time"""
    options = {"tcp_keepalive": T // 2} if keepalive == "tcp keepalive" else {"heartbeat": T / 2}
    variant = f"fix d: {keepalive} every {T / 2:g}s"
    s = sweep(lab, fw, case, variant, STRICT, probes_at(**options))
    for r in s.results:
        assert r.outcome == "delivered", (
            f"{keepalive}, idle {r.probe.idle}s: {r.raw} (captures in {case.path})"
        )
        history = [
            v for t, v, _ in s.sessions.history(r.sport) if r.wall_start <= t <= r.wall_start + r.probe.idle
        ]
        assert history and None not in history, f"session of {r.client} left the table while idle: {history}"
    beats = {f"idle {r.probe.idle:g}s": r.raw.get("heartbeats") for r in s.results}
    case.figure("heartbeats sent", beats)


def test_outcome_figure(case):
    """Outcome against idle time / timeout for every variant"""
    variants = {row["variant"] for row in OUTCOMES}
    case.figure("variants", sorted(variants))
    path = outcome_figure(OUTCOMES, T, case.plot_path("outcomes", "outcome against idle/timeout per variant"))
    (case.path / "outcomes.json").write_text(json.dumps(OUTCOMES, indent=1))
    assert len(variants) >= 7, f"expected every variant's outcomes, got {sorted(variants)}"
    assert path.stat().st_size > 10_000
