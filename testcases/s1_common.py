"""S1's shared parts (SCENARIOS.md, session idle timeout): the lab's timeout T, the probe
sweep of every variant, and the checks several of S1's modules make.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
Each sweep runs idle probes with idle times of 0.5 T, 1.5 T and 3 T at once, with
captures on both sides of the firewall, the session table and both ends' sockets sampled
throughout. Every case uses its own source ports (its port block), its own echo servers
and a firewall with an empty table and zeroed counters. A sweep runs over IPv4 (the
lab's `ip`) or IPv6 (the topology's PLAN6): `family`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lab.capture import Capture, SessionRecorder, SocketRecorder, stop_captures
from lab.config import FirewallPolicy, Service, TimeoutRule
from lab.neighbours import resolved
from lab.packets import TcpSegment
from lab.plot import session_timeline
from lab.results import Case, safe_name
from lab.topology import plan
from lab.traffic import IdleProbe, ProbeResult, run_probes, server_events

T = 2  # the firewall's TCP idle timeout in this lab (s)
IDLES = (0.5 * T, 1.5 * T, 3 * T)
APP_TIMEOUT = 3.0  # how long the application waits for a reply
SERVICE, LONG_SERVICE, PUBLISHED, UNPUBLISHED = 8080, 9000, 2222, 2223
STRICT = FirewallPolicy(tcp_timeout=T, allow_inbound=(Service(PUBLISHED),))
DELIVERED_ALL = ("delivered",) * 3
EXPIRES = ("delivered", "hung", "hung")
# The echo servers of every S1 case, node -> ports (the shared `servers` fixture).
ECHOES = {"server": (SERVICE, LONG_SERVICE), "client": (PUBLISHED, UNPUBLISHED)}


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


def address(lab, node: str, family: int = 4) -> str:
    """A node's address in the S1 lab: IPv4 (the lab's), or IPv6 (the topology's PLAN6)."""
    return lab.ip(node) if family == 4 else plan("s1", family=family).address(node)


@dataclass
class Run:
    """One sweep's results and evidence; `client` and `server`: the addresses it ran
    between (its family's)."""

    sweep: Sweep
    results: list[ProbeResult]
    inside: Capture
    outside: Capture
    sessions: SessionRecorder
    sockets: SocketRecorder
    rows: list[dict[str, Any]] = field(default_factory=list)
    client: str = ""
    server: str = ""

    def by_idle(self, idle: float, port: int = SERVICE) -> ProbeResult:
        return next(r for r in self.results if r.probe.idle == idle and r.probe.port == port)

    def of(self, series: Series) -> list[ProbeResult]:
        """The results of one series, in the order of IDLES."""
        return [r for r in self.results if r.probe.label == series.label]


def run_sweep(
    lab, fw, case: Case, sweep: Sweep, outcomes: dict[str, list[dict[str, Any]]], family: int = 4
) -> Run:
    """Load the sweep's policy, run its probes at once with captures and samplers; keep
    the evidence in the case folder and the outcome rows for the summary. `family`: 4 or 6,
    the probes' (client to server)."""
    folder = case.path if sweep.name not in outcomes else case.path / safe_name(sweep.name)
    folder.mkdir(parents=True, exist_ok=True)
    case.keep(fw.apply_policy(sweep.policy), f"ruleset, {sweep.name}")
    fw.flush_sessions()
    client, server = address(lab, "client", family), address(lab, "server", family)
    # fw knows both hosts' link-layer addresses before the probes: a SYN that waits for its
    # neighbour is retransmitted, and then the session's first RTO is 3 s, past the app's timeout
    for host in (client, server):
        resolved(lab, "fw", host, 10)
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
        results = run_probes(lab, "client", server, probes)
        stop_captures([inside, outside])
    run = Run(sweep, results, inside, outside, sessions, sockets, client=client, server=server)
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
    client, server = run.client, run.server
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


# --- the checks of fixes a, b and d and of the failure, on any run (its family's addresses)


def assert_believed_while_hung(run: Run, hung: list[ProbeResult]) -> dict[str, dict[str, list[str]]]:
    """While each client hangs, both ends' sockets stay ESTABLISHED (ss): neither learns."""
    believed = {}
    for r in hung:
        window = (r.wall_start + r.probe.idle + 0.3, r.wall_start + r.learned_after - 0.3)
        server_states = set(run.sockets.states("server", r.sport, *window))
        client_states = set(run.sockets.states("client", r.sport, *window, local=True))
        believed[f"idle {r.probe.idle:g}s"] = {
            "server": sorted(server_states),
            "client": sorted(client_states),
        }
        assert server_states == {"ESTAB"} and client_states == {"ESTAB"}, (
            f"idle {r.probe.idle:g}s: both ends' sockets should stay ESTABLISHED while the client hangs, "
            f"ss showed server {server_states or 'nothing'}, client {client_states or 'nothing'} "
            "(sockets.json)"
        )
    return believed


def assert_invalid_drops(fw, run: Run, hung: list[ProbeResult]) -> dict[str, int]:
    """The firewall's invalid-drop counter counts the hung clients' segments, and no more
    than this case's packets could make."""
    drops = fw.counters()
    sent = sum(len(data_segments(run.inside, run.client, r.sport, 0)) for r in hung)
    assert drops["drop_invalid"] >= 2, (
        f"the firewall's invalid-drop counter should count the dropped segments: {drops}"
    )
    assert drops["drop_invalid"] <= sent + 2 * len(run.results), (
        f"the counter ({drops}) counts more than this case's {sent} captured data segments (and their ACKs)"
    )
    return drops


def assert_timeouts_by_port(run: Run, long_port: int, short_port: int) -> dict[int, int]:
    """The session table, once every probe's session is in it: the longest timeout left of
    `short_port`'s sessions is at most T, the shortest of `long_port`'s more (a per-port
    timeout applies to this run's family)."""
    sports = {r.sport for r in run.results}
    first = next(
        (
            snap
            for snap in run.sessions.snapshots
            if sports <= {x.sport for x in snap.sessions if x.state == "ESTABLISHED" and x.src == run.client}
        ),
        None,
    )
    assert first is not None, f"no snapshot held every probe's session ({run.sessions.snapshots[:1]}...)"
    left: dict[int, list[int]] = {}
    for x in first.sessions:
        if x.sport in sports and x.dport is not None and x.timeout is not None:
            left.setdefault(x.dport, []).append(x.timeout)
    timeouts = {long_port: min(left.get(long_port, [0])), short_port: max(left.get(short_port, [T + 1]))}
    assert timeouts[long_port] > T and timeouts[short_port] <= T, (
        f"session table shows {left} left: port {long_port} should have more than {T}s, "
        f"port {short_port} {T}s"
    )
    return timeouts


def assert_recreated(run: Run, result: ProbeResult) -> float:
    """Loose pick-up: the segment after the idle crossed the firewall (server side) at the
    idle's end, and the table shows the entry expire and come back around that crossing:
    absent in a reading started before it, present in one ended after it (a reading takes
    time, more on a busy machine). When, after the idle began (s), from the capture."""
    evidence = f"({run.outside.path}, {run.inside.path.parent / 'sessions.json'})"
    start, idle = result.wall_start, result.probe.idle
    crossed = data_segments(run.outside, run.client, result.sport, start + idle - 0.1)
    window = run.sessions.came_back(result.sport, start + T)
    assert crossed and window, f"the segment after the idle should cross as the entry comes back {evidence}"
    recreated, (absent, present) = crossed[0].time - start, window
    assert absent <= crossed[0].time <= present and idle - 0.1 <= recreated <= idle + 0.5, (
        f"the entry should come back with the segment after {idle:g}s idle {evidence}: it crossed at "
        f"{recreated:.2f}s, the entry absent until {absent - start:.2f}s, present by {present - start:.2f}s"
    )
    return recreated


def assert_kept_alive(run: Run, results: list[ProbeResult], tcp_keepalive: int = 0) -> dict[str, int]:
    """Fix d: the entry never left the table while idle, and the keepalives were sent:
    with `tcp_keepalive` (the period, s), the probes captured crossing the firewall (fw-out)
    while idle; else the heartbeats the application counted."""
    sent = {}
    for r in results:
        # A sample's stamp is when `conntrack -L` returned; it began after the one before
        # it ended: only samples begun once the idle had begun tell of the idle (with 12
        # probes starting at once, one begun before the connect returned after it).
        history = run.sessions.history(r.sport)
        during = [
            v
            for (begun, _, _), (t, v, _) in zip(history, history[1:], strict=False)
            if begun >= r.wall_start and t <= r.wall_start + r.probe.idle
        ]
        assert during and None not in during, f"session of {r.client} left the table while idle: {during}"
        if tcp_keepalive:
            idle = (r.wall_start + 0.05, r.wall_start + r.probe.idle)
            count = len(
                [
                    s
                    for s in run.outside.segments()
                    if s.sport == r.sport
                    and s.payload_len == 0
                    and s.flags == "A"
                    and idle[0] <= s.time <= idle[1]
                ]
            )
            assert count >= int(r.probe.idle / tcp_keepalive) - 1, (
                f"idle {r.probe.idle:g}s: {count} keepalive probes crossed the firewall, expected one "
                f"every {tcp_keepalive}s ({run.outside.path})"
            )
        else:
            count = r.raw.get("heartbeats", 0)
            assert count >= int(r.probe.idle / (T / 2)) - 1, f"too few heartbeats: {r.raw}"
        sent[f"idle {r.probe.idle:g}s"] = count
    assert sent[f"idle {IDLES[-1]:g}s"] >= 1, f"no keepalive at the longest idle: {sent}"
    return sent
