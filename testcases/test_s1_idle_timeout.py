"""S1, session idle timeout (SCENARIOS.md): a stateful firewall forgets an idle session.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
Each sweep runs idle probes with idle times of 0.5 T, 1.5 T and 3 T at once, with
captures on both sides of the firewall, the session table and both ends' sockets sampled
throughout. Every case uses its own source ports (its port block), its own echo servers
and a firewall with an empty table and zeroed counters.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from lab.capture import Capture, SessionEvents, SessionRecorder, SocketRecorder
from lab.config import FirewallPolicy, Service, TimeoutRule
from lab.packets import TcpSegment
from lab.plot import outcome_figure, packet_timeline, session_timeline
from lab.results import Case, safe_name
from lab.traffic import IdleProbe, ProbeResult, run_probes, send_segment, server_events, start_echo_server


def dashed(value: str) -> str:
    """A case id without spaces, so that `-k` and node ids select it as typed."""
    return value.replace(" ", "-")


LAB_TOPOLOGY = "s1"
LAB_TOPOLOGY_PARAMS = {"wan_delay": "0ms"}  # the s2-server link can become a WAN link
T = 2  # the firewall's TCP idle timeout in this lab (s)
IDLES = (0.5 * T, 1.5 * T, 3 * T)
APP_TIMEOUT = 3.0  # how long the application waits for a reply
SERVICE, LONG_SERVICE, PUBLISHED, UNPUBLISHED = 8080, 9000, 2222, 2223
STRICT = FirewallPolicy(tcp_timeout=T, allow_inbound=(Service(PUBLISHED),))
DELIVERED_ALL = ("delivered",) * 3
EXPIRES = ("delivered", "hung", "hung")


@dataclass(frozen=True)
class Series:
    """Probes at every idle time to one port, with what each idle time should give."""

    label: str
    expected: tuple[str, ...]  # the outcome at each of IDLES
    port: int = SERVICE
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Sweep:
    """A firewall policy and the probe series run through it at once."""

    name: str
    policy: FirewallPolicy
    series: tuple[Series, ...]


SWEEPS = {
    s.name: s
    for s in (
        Sweep("no fix", STRICT, (Series("no fix (strict)", EXPIRES),)),
        Sweep(
            "fix a",
            STRICT.with_changes(timeouts=(TimeoutRule(timeout=10 * T, port=LONG_SERVICE),)),
            (
                Series(f"fix a: port {LONG_SERVICE} timeout {10 * T}s", DELIVERED_ALL, LONG_SERVICE),
                Series(f"fix a: port {SERVICE} default T", EXPIRES),
            ),
        ),
        Sweep(
            "fix b", STRICT.with_changes(loose_pickup=True), (Series("fix b: loose pick-up", DELIVERED_ALL),)
        ),
        Sweep(
            "fix c",
            STRICT.with_changes(reset_on_expiry=True),
            (Series("fix c: RST at expiry", ("delivered", "reset", "reset")),),
        ),
        Sweep(
            "fix d: tcp keepalive",
            STRICT,
            (
                Series(
                    f"fix d: tcp keepalive every {T // 2}s",
                    DELIVERED_ALL,
                    options=(("tcp_keepalive", T // 2),),
                ),
            ),
        ),
        Sweep(
            "fix d: heartbeat",
            STRICT,
            (Series(f"fix d: heartbeat every {T / 2:g}s", DELIVERED_ALL, options=(("heartbeat", T / 2),)),),
        ),
        Sweep("push: no fix", STRICT, (Series("server push: no fix", EXPIRES, options=(("push", True),)),)),
        Sweep(
            "push: loose pick-up",
            STRICT.with_changes(loose_pickup=True),
            (Series("server push: loose pick-up", EXPIRES, options=(("push", True),)),),
        ),
        Sweep(
            "push: tcp keepalive",
            STRICT,
            (
                Series(
                    f"server push: tcp keepalive every {T // 2}s",
                    DELIVERED_ALL,
                    options=(("push", True), ("tcp_keepalive", T // 2)),
                ),
            ),
        ),
    )
}


@dataclass
class Run:
    """One sweep's results and evidence."""

    sweep: Sweep
    results: list[ProbeResult]
    inside: Capture
    outside: Capture
    sessions: SessionRecorder
    sockets: SocketRecorder
    rows: list[dict[str, Any]] = field(default_factory=list)

    def by_idle(self, idle: float, port: int = SERVICE) -> ProbeResult:
        return next(r for r in self.results if r.probe.idle == idle and r.probe.port == port)


@pytest.fixture
def servers(lab):
    """This case's echo servers (ended with the case): their logs hold only its sessions."""
    return {
        "server": start_echo_server(lab, "server", [SERVICE, LONG_SERVICE], "echo-server"),
        "client": start_echo_server(lab, "client", [PUBLISHED, UNPUBLISHED], "echo-client"),
    }


@pytest.fixture
def fw(lab):
    node = lab.node("fw")
    node.apply_policy(STRICT)
    return node


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list[dict[str, Any]]]:
    """Each sweep's outcome rows, as the cases of this module ran them (any selection)."""
    return {}


def run_sweep(lab, fw, case: Case, sweep: Sweep, outcomes: dict[str, list[dict[str, Any]]]) -> Run:
    """Load the sweep's policy, run its probes at once with captures and samplers; keep
    the evidence in the case folder and the outcome rows for the summary."""
    folder = case.path if sweep.name not in outcomes else case.path / safe_name(sweep.name)
    folder.mkdir(parents=True, exist_ok=True)
    case.keep(fw.apply_policy(sweep.policy), f"ruleset, {sweep.name}")
    fw.flush_sessions()
    probes = [
        IdleProbe(
            port=s.port,
            idle=i,
            app_timeout=APP_TIMEOUT,
            label=s.label,
            sport=case.take_port(),
            **dict(s.options),
        )
        for s in sweep.series
        for i in IDLES
    ]
    with (
        Capture(lab, "fw", "fw-in", folder, "inside-fw-in") as inside,
        Capture(lab, "fw", "fw-out", folder, "outside-fw-out") as outside,
        SessionRecorder(lab, "fw") as sessions,
        SocketRecorder(lab, ["client", "server"], case.ports) as sockets,
    ):
        results = run_probes(lab, "client", lab.ip("server"), probes)
    run = Run(sweep, results, inside, outside, sessions, sockets)
    case.keep(inside.path, "capture, client side (fw-in)")
    case.keep(outside.path, "capture, server side (fw-out)")
    case.keep(sessions.save(folder / "sessions.json"), "session table over time")
    case.keep(sockets.save(folder / "sockets.json"), "both ends' sockets over time (ss)")
    (folder / "probes.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    case.keep(folder / "probes.json", "probe results")
    run.rows = [
        {
            "variant": r.probe.label,
            "idle": r.probe.idle,
            "outcome": r.outcome,
            "learned_after": r.learned_after,
        }
        for r in results
    ]
    outcomes[sweep.name] = run.rows
    t0 = min(r.wall_start for r in results)
    # An established session's countdown; closing states (TIME_WAIT...) would dwarf it.
    series = {
        f"{r.probe.label}, idle {r.probe.idle:g}s": [
            (t - t0, v if state == "ESTABLISHED" else None) for t, v, state in sessions.history(r.sport)
        ]
        for r in results
    }
    session_timeline(
        series,
        T,
        case.plot_path(f"sessions-{safe_name(sweep.name)}", f"{sweep.name}: session-table entries over time"),
        f"{sweep.name}: remaining timeout of each probe's session (T = {T}s)",
    )
    return run


def assert_as_expected(run: Run) -> dict[str, str]:
    """Every probe's outcome is the one its series expects at its idle time."""
    got = {}
    for s in run.sweep.series:
        for idle, expected in zip(IDLES, s.expected, strict=True):
            r = next(r for r in run.results if r.probe.label == s.label and r.probe.idle == idle)
            got[f"{s.label}, idle {idle:g}s"] = r.outcome
            assert r.outcome == expected, (
                f"{s.label}, idle {idle:g}s (T={T}s): expected {expected}, got {r.raw} "
                f"(captures {run.inside.path.parent})"
            )
    return got


def server_saw(servers, result: ProbeResult, data: str) -> bool:
    return any(
        e["event"] == "recv" and e["data"] == data for e in server_events(servers["server"], result.client)
    )


def data_segments(capture: Capture, src: str, sport: int, after: float) -> list[TcpSegment]:
    """Segments with data from `src`:`sport` captured after `after` (wall clock)."""
    return [
        s
        for s in capture.segments()
        if (s.src, s.sport) == (src, sport) and s.payload_len > 0 and s.time >= after
    ]


def assert_expired_and_hung(run: Run, servers, result: ProbeResult, client: str) -> None:
    evidence = f"(captures {run.inside.path}, {run.outside.path}; server log)"
    expected = result.probe.idle + APP_TIMEOUT
    assert expected - 0.2 <= result.learned_after <= expected + 1.5, (
        f"the application should learn only from its own {APP_TIMEOUT}s timeout, at ~{expected:g}s; "
        f"it took {result.learned_after:.2f}s"
    )
    assert not server_saw(servers, result, "after-idle"), (
        f"the server received the segment after idle {evidence}"
    )
    after = result.wall_start + result.probe.idle - 0.05
    sent = data_segments(run.inside, client, result.sport, after)
    passed = data_segments(run.outside, client, result.sport, after)
    assert len(sent) >= 2, (
        f"expected the client's segment and its retransmissions on fw-in, saw {len(sent)} {evidence}"
    )
    assert passed == [], f"{len(passed)} data segments crossed the firewall after expiry {evidence}"


def test_failure_idle_past_timeout_hangs(lab, fw, servers, case, outcomes):
    """Failure: idle past the timeout, the next segment is dropped and the application hangs"""
    run = run_sweep(lab, fw, case, SWEEPS["no fix"], outcomes)
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


def test_fix_a_longer_timeout_for_one_service(lab, fw, servers, case, outcomes):
    """Fix a: a longer timeout for one service port; another port still expires"""
    run = run_sweep(lab, fw, case, SWEEPS["fix a"], outcomes)
    case.figure("outcomes", assert_as_expected(run))
    for idle in IDLES:
        r = run.by_idle(idle, LONG_SERVICE)
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    for idle in IDLES[1:]:
        assert_expired_and_hung(run, servers, run.by_idle(idle, SERVICE), lab.ip("client"))
    first = next(snap for snap in run.sessions.snapshots if len(snap.sessions) >= 2 * len(IDLES))
    timeouts = {x.dport: x.timeout for x in first.sessions if x.state == "ESTABLISHED"}
    case.figure("session timeouts in the table at start (s)", timeouts)
    assert timeouts.get(LONG_SERVICE, 0) > T, (
        f"session table shows {timeouts}: port {LONG_SERVICE} should have {10 * T}s"
    )
    assert timeouts.get(SERVICE, T + 1) <= T, (
        f"session table shows {timeouts}: port {SERVICE} should keep {T}s"
    )


def test_fix_b_loose_pickup_delivers(lab, fw, servers, case, outcomes):
    """Fix b: loose pick-up admits the mid-stream segment and re-creates the session"""
    run = run_sweep(lab, fw, case, SWEEPS["fix b"], outcomes)
    case.figure("outcomes", assert_as_expected(run))
    for r in run.results:
        assert server_saw(servers, r, "after-idle"), (
            f"server log lacks the segment after idle from {r.client}"
        )
    late = run.by_idle(IDLES[-1])
    history = run.sessions.history(late.sport)
    gone = [t for t, v, _ in history if v is None and t > late.wall_start + T]
    back = [t for t, v, _ in history if v is not None and gone and t > gone[0]]
    assert gone and back, (
        f"session table ({case.path / 'sessions.json'}) should show the entry expire and come back"
    )
    recreated = back[0] - late.wall_start
    case.figure("session absent, then re-created by the mid-stream segment at (s)", round(recreated, 2))
    assert late.probe.idle - 0.1 <= recreated <= late.probe.idle + 0.5, (
        f"the entry should come back with the segment after {late.probe.idle:g}s idle: {recreated:.2f}s"
    )


def test_fix_b_security_cost(lab, fw, servers, case):
    """Fix b's cost: an unsolicited ACK from outside creates a session in loose mode only"""
    client, server = lab.ip("client"), lab.ip("server")
    counts: dict[str, dict[str, int]] = {}
    for mode, policy in (("strict", STRICT), ("loose", STRICT.with_changes(loose_pickup=True))):
        case.keep(fw.apply_policy(policy), f"ruleset, {mode}")
        fw.flush_sessions()
        sports = {port: case.take_port() for port in (PUBLISHED, UNPUBLISHED)}
        with (
            Capture(lab, "fw", "fw-out", case.path, f"{mode}-outside-fw-out") as outside,
            Capture(lab, "fw", "fw-in", case.path, f"{mode}-inside-fw-in") as inside,
            SessionEvents(lab, "fw", f"{mode}-session-events", only="NEW") as events,
        ):
            for port in (PUBLISHED, UNPUBLISHED):
                dropped = fw.drops()
                send_segment(lab, "server", server, client, sports[port], port, "A")

                def verdict(port: int = port, dropped: int = dropped) -> bool:
                    created = [e for e in events.events() if e.event == "NEW" and e.dport == port]
                    return bool(created) or fw.drops() > dropped

                # The firewall's verdict on the segment: a session created, or a drop counted.
                lab.wait(verdict, 5, f"the firewall to admit or drop the ACK to port {port}")
        case.keep(outside.path, f"capture outside, {mode}")
        case.keep(inside.path, f"capture inside, {mode}")
        case.keep(events.path, f"session events, {mode}")
        arrived, seen = outside.segments(), inside.segments()
        new = [e for e in events.events() if e.event == "NEW" and e.src == server]
        counts[mode] = {"drops": fw.drops()}
        for port in (PUBLISHED, UNPUBLISHED):
            ack = (server, sports[port], client, port)
            counts[mode][f"ACKs arriving outside, port {port}"] = len([x for x in arrived if x.key == ack])
            counts[mode][f"sessions created, port {port}"] = len([e for e in new if e.dport == port])
            counts[mode][f"ACKs let in, port {port}"] = len([x for x in seen if x.key == ack])
            counts[mode][f"inside host answered, port {port}"] = len(
                [x for x in seen if x.key == (client, port, server, sports[port])]
            )
    case.figure("unsolicited ACK from outside", counts)
    ev = f"(captures and session events in {case.path})"
    for mode in ("strict", "loose"):
        for port in (PUBLISHED, UNPUBLISHED):
            assert counts[mode][f"ACKs arriving outside, port {port}"] == 1, (
                f"{mode}: the ACK to {port} never arrived {ev}"
            )
        assert counts[mode][f"sessions created, port {UNPUBLISHED}"] == 0, (
            f"{mode}: unpublished port got a session {ev}"
        )
        assert counts[mode][f"ACKs let in, port {UNPUBLISHED}"] == 0, f"{mode}: unpublished port reached {ev}"
    assert counts["strict"][f"sessions created, port {PUBLISHED}"] == 0, f"strict mode created a session {ev}"
    assert counts["strict"][f"ACKs let in, port {PUBLISHED}"] == 0, f"strict mode let the ACK in {ev}"
    assert counts["strict"]["drops"] == 2, f"strict mode should drop both ACKs, no more {ev}"
    assert counts["loose"][f"sessions created, port {PUBLISHED}"] == 1, (
        f"loose mode should create a session {ev}"
    )
    assert counts["loose"][f"ACKs let in, port {PUBLISHED}"] == 1, f"loose mode should let the ACK in {ev}"
    assert counts["loose"][f"inside host answered, port {PUBLISHED}"] == 1, (
        f"the inside host should answer (RST) {ev}"
    )


def next_expected(segments: list[TcpSegment], flow: tuple[str, int, str, int], before: float) -> int | None:
    """The receiver's RCV.NXT for what was sent along `flow` (src, sport, dst, dport)
    before `before`, from a capture: the end of the last segment that carried sequence
    space (data, SYN or FIN)."""
    last = None
    for s in segments:
        if s.key == flow and s.time < before and (s.payload_len or "S" in s.flags or "F" in s.flags):
            last = (s.seq + s.payload_len + ("S" in s.flags) + ("F" in s.flags)) & 0xFFFFFFFF
    return last


def check_reset_at_expiry(lab, run: Run, servers, case: Case, rtt: float = 0.0) -> None:
    """Fix c's evidence: both ends reset after T, exactly one RST per side with the
    receiver's next expected number. The agent probes both ends and resets once both have
    answered, so the client learns after T + RTT and the server after T + 1.5 RTT (`rtt`:
    between the firewall and the server; the client is next to it)."""
    client, server = lab.ip("client"), lab.ip("server")
    learned, rsts, waits = {}, {}, {}
    for idle in IDLES[1:]:
        r = run.by_idle(idle)
        assert r.raw.get("error") == "ECONNRESET", f"idle {idle}s: {r.raw} (agent log)"
        window = (T - 0.1 + rtt, T + 1.0 + rtt)
        assert window[0] <= r.learned_after <= window[1], (
            f"client reset after {r.learned_after:.2f}s, expected {window[0]:.2f}-{window[1]:.2f}s "
            f"(T = {T}s, RTT {rtt * 1000:g} ms)"
        )
        errors = [e for e in server_events(servers["server"], r.client) if e["event"] == "error"]
        assert errors and errors[0]["error"] == "ConnectionResetError", f"server log for {r.client}: {errors}"
        server_after = errors[0]["t"] - r.wall_start
        window = (T - 0.1 + 1.5 * rtt, T + 1.0 + 1.5 * rtt)
        assert window[0] <= server_after <= window[1], (
            f"server reset after {server_after:.2f}s, expected {window[0]:.2f}-{window[1]:.2f}s "
            f"(T = {T}s, RTT {rtt * 1000:g} ms)"
        )
        learned[f"idle {idle:g}s"] = {"client": round(r.learned_after, 2), "server": round(server_after, 2)}
        # One RST per side, each with exactly the sequence number its receiver expects.
        ends = {
            "client (fw-in)": (run.inside, (server, SERVICE), (client, r.sport)),
            "server (fw-out)": (run.outside, (client, r.sport), (server, SERVICE)),
        }
        for side, (capture, sender, receiver) in ends.items():
            segments = capture.segments()
            to_receiver = [s for s in segments if (s.src, s.sport, s.dst, s.dport) == (*sender, *receiver)]
            resets = [s for s in to_receiver if "R" in s.flags]
            assert len(resets) == 1, (
                f"idle {idle:g}s: expected one RST to the {side}, captured {resets} ({capture.path})"
            )
            expected = next_expected(segments, (*sender, *receiver), resets[0].time)
            assert resets[0].seq == expected, (
                f"idle {idle:g}s: RST to the {side} has seq {resets[0].seq}, the receiver's "
                f"RCV.NXT from the capture is {expected} ({capture.path})"
            )
            rsts[f"idle {idle:g}s, RST to the {side}"] = {
                "seq": resets[0].seq,
                "receiver's RCV.NXT": expected,
            }
            if side.startswith("server"):
                # Between the agent's probe of the server and its RST, the server's answer
                # crossed the WAN and back: at least one RTT, on the capture's clock.
                probe = next(s for s in to_receiver if s.time >= r.wall_start + T - 0.1 and not s.payload_len)
                waits[f"idle {idle:g}s"] = round((resets[0].time - probe.time) * 1000, 1)
                assert resets[0].time - probe.time >= 0.9 * rtt, (
                    f"idle {idle:g}s: RST {1000 * (resets[0].time - probe.time):.1f} ms after the probe of "
                    f"the server, less than the RTT {rtt * 1000:g} ms ({capture.path})"
                )
    case.figure("reset seen after (s)", learned)
    case.figure("RSTs and the receivers' next expected sequence numbers (captures)", rsts)
    case.figure("server probed, then reset after (ms, capture on fw-out)", waits)
    again = run_probes(lab, "client", server, [IdleProbe(SERVICE, 0.2, APP_TIMEOUT, sport=case.take_port())])[
        0
    ]
    assert again.outcome == "delivered", f"the application could not reconnect after the reset: {again.raw}"


def test_fix_c_reset_both_ends_at_expiry(lab, fw, servers, case, outcomes):
    """Fix c: the firewall resets both ends at expiry; both applications learn at about T"""
    run = run_sweep(lab, fw, case, SWEEPS["fix c"], outcomes)
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


@pytest.mark.parametrize("keepalive", ["tcp keepalive", "heartbeat"], ids=dashed)
def test_fix_d_keepalive_survives_idle(lab, fw, servers, case, outcomes, keepalive):
    """Fix d: application keepalive (period < T) keeps the session through any idle time"""
    run = run_sweep(lab, fw, case, SWEEPS[f"fix d: {keepalive}"], outcomes)
    case.figure("outcomes", assert_as_expected(run))
    for r in run.results:
        history = [
            v for t, v, _ in run.sessions.history(r.sport) if r.wall_start <= t <= r.wall_start + r.probe.idle
        ]
        assert history and None not in history, f"session of {r.client} left the table while idle: {history}"
    if keepalive == "heartbeat":
        beats = {f"idle {r.probe.idle:g}s": r.raw.get("heartbeats") for r in run.results}
        case.figure("heartbeats sent", beats)
        for r in run.results:
            assert r.raw.get("heartbeats", 0) >= int(r.probe.idle / (T / 2)) - 1, (
                f"too few heartbeats: {r.raw}"
            )
    else:
        period = T // 2
        probes = {}
        for r in run.results:
            idle = (r.wall_start + 0.05, r.wall_start + r.probe.idle)
            acks = [
                s
                for s in run.outside.segments()
                if s.sport == r.sport
                and s.payload_len == 0
                and s.flags == "A"
                and idle[0] <= s.time <= idle[1]
            ]
            probes[f"idle {r.probe.idle:g}s"] = len(acks)
            assert len(acks) >= int(r.probe.idle / period) - 1, (
                f"idle {r.probe.idle:g}s: {len(acks)} keepalive probes crossed the firewall, expected one "
                f"every {period}s ({run.outside.path})"
            )
        case.figure("keepalive probes that crossed the firewall while idle (capture)", probes)
        assert probes[f"idle {IDLES[-1]:g}s"] >= 1, f"no keepalive crossed the firewall: {probes}"


@pytest.mark.parametrize("fix", ["no fix", "loose pick-up", "tcp keepalive"], ids=dashed)
def test_service_direction_server_push(lab, fw, servers, case, outcomes, fix):
    """Service direction: the server speaks first after idle; loose pick-up cannot save it, keepalive can"""
    run = run_sweep(lab, fw, case, SWEEPS[f"push: {fix}"], outcomes)
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


WAN_RTT = 0.050  # s: the WAN cases' round trip between the firewall and the server
WAN_SWEEPS = {
    name: Sweep(
        f"{name}, {WAN_RTT * 1000:g} ms RTT",
        SWEEPS[name].policy,
        tuple(replace(s, label=f"{s.label}, {WAN_RTT * 1000:g} ms RTT") for s in SWEEPS[name].series),
    )
    for name in ("no fix", "fix c")
}


def median_rtt(lab, count: int = 20) -> float:
    """The client's median ping RTT to the server (s)."""
    out = lab.run("client", ["ping", "-n", "-c", str(count), "-i", "0.01", "-W", "1", lab.ip("server")])
    return statistics.median(float(x) for x in re.findall(r"time=([\d.]+)", out)) / 1000


@pytest.fixture
def wan(lab, fw, case):
    """For this case the server is behind a WAN link: the s2-server link delays each
    direction by half of WAN_RTT (the lab's impairment element); the RTT is measured before
    and after, and the link goes back to 0 ms after the case."""
    lan = median_rtt(lab)
    lab.impair("server", "s2", delay=f"{WAN_RTT * 500:g}ms")
    try:
        wan_rtt = median_rtt(lab)
        case.figure(
            "client-server RTT, LAN then WAN (ms, ping median)",
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


def test_over_wan_failure_idle_past_timeout_hangs(lab, fw, servers, case, outcomes, wan):
    """Failure over a 50 ms RTT WAN: idle past T still drops the next segment and the application hangs"""
    run = run_sweep(lab, fw, case, WAN_SWEEPS["no fix"], outcomes)
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


def test_over_wan_fix_c_reset_both_ends_at_expiry(lab, fw, servers, case, outcomes, wan):
    """Fix c over a 50 ms RTT WAN: both ends reset at expiry, the server one and a half RTTs later"""
    run = run_sweep(lab, fw, case, WAN_SWEEPS["fix c"], outcomes)
    case.figure("outcomes", assert_as_expected(run))
    check_reset_at_expiry(lab, run, servers, case, rtt=wan)


def test_outcome_figure(lab, fw, servers, case, outcomes):
    """Outcome against idle time / timeout for every variant"""
    ran_here = [name for name in SWEEPS if name not in outcomes]
    for name in ran_here:  # sweeps this selection did not run: run them now
        run_sweep(lab, fw, case, SWEEPS[name], outcomes)
    case.figure("sweeps run by this case (not selected on their own)", ran_here)
    rows = [row for name in SWEEPS for row in outcomes[name]]
    expected = {
        (s.label, idle): outcome
        for sweep in SWEEPS.values()
        for s in sweep.series
        for idle, outcome in zip(IDLES, s.expected, strict=True)
    }
    got = {(row["variant"], row["idle"]): row["outcome"] for row in rows}
    assert got == expected, (
        f"outcomes differ from what each variant predicts: {sorted(set(got.items()) ^ set(expected.items()))}"
    )
    table = {}
    for (label, idle), outcome in got.items():
        table.setdefault(label, {})[f"{idle / T:g} T"] = outcome
    case.figure("outcome per variant and idle time", table)
    outcome_figure(rows, T, case.plot_path("outcomes", "outcome against idle/timeout per variant"))
    (case.path / "outcomes.json").write_text(json.dumps(rows, indent=1))
    case.keep(case.path / "outcomes.json", "the plotted outcomes")
