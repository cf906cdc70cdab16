"""S5 (SCENARIOS.md): the session table as a resource, exhausted.

   inside: srv 10.0.1.10 (echo servers on 80, published, and 5001, not), c1 10.0.1.11
   outside: ext 10.0.2.10 (echo server on 8080), legit .20, attacker .66 (spoofing .166), scanner .77

A bounded SYN flood from an address nobody holds fills the firewall's table (its own
capacity); legitimate clients fail; each defence on the same attack, at several rates.
A defence's rates run at once, each in a lab of its own (the module's lab and one side lab
per further rate, testcases/parallel_labs.py): every firewall's table holds one rate's
attack only, as when they ran one after another, in a quarter of the time (early drop's
one after another: ONE_AT_A_TIME).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lab.attacks import hping3_argv, run_hping3
from lab.capture import Capture, SessionEvents, TableRecorder, stop_captures
from lab.plot import attack_figure, occupancy_figure
from lab.render.nftables import DROP_COUNTERS
from lab.results import Case, safe_name
from lab.traffic import SessionLoad, finish_sessions, server_events, start_echo_server, start_sessions
from lab.wait import at_once
from testcases.common import rerun_missing
from testcases.parallel_labs import in_case, side_labs
from testcases.s5_common import ECHOES, INTENT, PUBLISHED, accepted_from

# This module's lab, every S5 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up.
LAB_TOPOLOGY, FIREWALL_POLICY, ECHO_SERVERS = "s5", INTENT, ECHOES
# The attacker's SYNs come from an address nobody in the lab holds: the SYN-ACKs go
# nowhere (the firewall's ARP for it fails), each SYN leaves a half-open session.
SPOOFED = "10.0.2.166"

CAPACITY = 200  # the firewall's own session capacity (max_sessions)
EXHAUST = INTENT.with_changes(max_sessions=CAPACITY)
DEFENCES = {
    "no defence": EXHAUST,
    "half-open timeout 1s": EXHAUST.with_changes(half_open_timeout=1),
    "SYN proxy": EXHAUST.with_changes(synproxy=True),
    "per-source limit 20": EXHAUST.with_changes(per_source_limit=20),
    "early drop": EXHAUST.with_changes(early_drop=True),
}
ATTACK_RATES = (0, 20, 80, 320)  # SYNs per second, each for ATTACK_TIME
# Defences whose rates run one after another, not at once: early drop's agent races the
# legitimate handshakes (it deletes every half-open session, theirs too), so its figure
# follows the machine's load; four labs at once on 2 cores caught up to 11 of 100 (80
# SYN/s), where one at a time under the same load caught none.
ONE_AT_A_TIME = ("early drop",)
ATTACK_TIME = 5
LEGIT_RATE = 20  # legitimate sessions per second meanwhile, each given LEGIT_TIMEOUT
# s: below TCP's first SYN retransmission (1 s), so a session works only if its first SYN
# got through; at 1 s a retransmitted SYN now and then beat the client's timer by 2 ms
LEGIT_TIMEOUT = 0.8
PER_CASE_PORTS = sum(ATTACK_RATES) * ATTACK_TIME + len(ATTACK_RATES) * LEGIT_RATE * ATTACK_TIME + 10


@dataclass
class Point:
    """One attack rate against one defence: what the legitimate clients got and why."""

    rate: int  # SYNs per second asked for
    measured_rate: float  # from the capture: the attacker's SYNs that reached the firewall
    syns: int
    legit: int
    worked: int
    counters: dict[str, int]
    peak_attacker: int  # the attacker's sessions in the table at most
    peak_table: int  # open sessions (not closed) in the table at most
    failed_syns_seen: int  # failed legitimate sessions whose SYN reached the firewall
    table: TableRecorder
    early_drops: int = 0  # as the early-drop agent reports them
    destroyed: int = 0  # the attacker's sessions the firewall removed (conntrack events)
    events_lost: bool = False

    @property
    def success(self) -> float:
        return 100.0 * self.worked / self.legit


@dataclass
class Side:
    """Where one attack rate runs: a lab, its firewall and this case's echo servers."""

    lab: Any
    fw: Any
    servers: dict[str, Any]
    label: str  # "" for the module's lab, else the side lab's name in evidence and logs


@pytest.fixture(scope="module")
def rate_labs(lab, run_dir) -> Iterator[list[Any]]:
    """A lab for every attack rate but the first (the module's lab runs that one): the
    rates of a defence run at once, each firewall with a table of its own."""
    folder = run_dir / f"{__name__.rsplit('.', 1)[-1]}-lab"
    with side_labs(LAB_TOPOLOGY, {}, folder, len(ATTACK_RATES) - 1) as labs:
        yield labs


@pytest.fixture
def sides(lab, fw, servers, case, rate_labs) -> Iterator[list[Side]]:
    """This case's lab for each attack rate, in ATTACK_RATES' order: the module's lab
    (the shared `fw` and `servers`), then the side labs, each given to the case as the
    plugin gives the module's lab (testcases/parallel_labs.py) with the same echo servers."""
    labels = [f"lab-{rate}-per-s" for rate in ATTACK_RATES[1:]]
    with in_case(dict(zip(labels, rate_labs, strict=True)), case) as mine:

        def ready(label: str, side: Any) -> Side:
            node = side.node("fw")
            node.apply_policy(FIREWALL_POLICY)
            echoes = {n: start_echo_server(side, n, list(ports), f"echo-{n}") for n, ports in ECHOES.items()}
            return Side(side, node, echoes, label)

        yield [Side(lab, fw, servers, ""), *at_once([partial(ready, *item) for item in mine.items()])]


@dataclass
class Plan:
    """One attack point's ports, taken from the case's block before the points start."""

    rate: int
    legit_ports: range
    attack_ports: range


def plan_points(case: Case) -> list[Plan]:
    """Every rate's ports, in the order a run one rate after another took them."""
    plans = []
    for rate in ATTACK_RATES:
        legit_ports = case.take_ports(LEGIT_RATE * ATTACK_TIME)
        attack_ports = case.take_ports(rate * ATTACK_TIME + 1)  # hping3 counts up from the first
        plans.append(Plan(rate, legit_ports, attack_ports))
    return plans


def attack_point(side: Side, plan: Plan, folder: Path) -> tuple[Point, Any, list[tuple[Path, str]]]:
    """The firewall empty, legitimate sessions to srv:80 for ATTACK_TIME at LEGIT_RATE,
    and meanwhile `rate` SYNs per second from the attacker, spoofed from SPOOFED; the
    evidence in `folder`/<rate>-per-s. Returns the point, the client's records (their
    margins for the case) and the evidence to keep (the caller notes both, in rate order)."""
    lab, fw, servers, rate = side.lab, side.fw, side.servers, plan.rate
    legit_ports, attack_ports = plan.legit_ports, plan.attack_ports
    fw.reset()
    srv, legit = lab.ip("srv"), lab.ip("legit")
    folder = folder / f"{rate}-per-s"
    folder.mkdir(parents=True, exist_ok=True)
    load = SessionLoad(
        [f"{srv}:{PUBLISHED}"],
        len(legit_ports),
        concurrency=32,
        timeout=LEGIT_TIMEOUT,
        first_port=legit_ports.start,
        rate=LEGIT_RATE,
    )
    agent = fw.agents.get("early_drop")
    drops_before = len([e for e in server_events(agent) if e["event"] == "early_drop"]) if agent else 0
    with (
        Capture(lab, "fw", "fw-out", folder, "outside-fw-out") as outside,
        Capture(lab, "fw", "fw-in", folder, "inside-fw-in", bpf=f"tcp and host {legit}") as inside,
        TableRecorder(lab, "fw", period=0.2) as table,
        SessionEvents(lab, "fw", f"destroyed-{rate}", only="DESTROY") as destroyed,
    ):
        proc = start_sessions(lab, "legit", load, f"legit-{rate}")
        if rate:
            argv = hping3_argv(
                srv,
                PUBLISHED,
                ("-S",),
                rate * ATTACK_TIME,
                1_000_000 // rate,
                attack_ports.start,
                keep_port=False,
                spoof=SPOOFED,
            )
            run_hping3(lab, "attacker", argv)
        records = finish_sessions(lab, proc, load)
        stop_captures([outside, inside])
    lab.cut(attack_ports)  # srv's half-open sessions, which would resend SYN-ACKs for a minute
    on = f" ({side.label})" if side.label else ""
    evidence = [
        (outside.path, f"capture, outside (fw-out), {rate} SYN/s{on}"),
        (inside.path, f"capture, inside (fw-in), legitimate sessions only, {rate} SYN/s{on}"),
        (table.save(folder / "table.json"), f"session table size over time, {rate} SYN/s{on}"),
    ]
    segments = outside.segments()
    syns = sorted(s.time for s in segments if s.src == SPOOFED and s.flags == "S" and s.sport in attack_ports)
    measured = (len(syns) - 1) / (syns[-1] - syns[0]) if len(syns) > 1 else 0.0
    failed = {r["sport"] for r in records if not r["data_ok"]}
    seen = {s.sport for s in segments if s.src == legit and s.flags == "S" and s.sport in failed}
    worked_ports = {r["sport"] for r in records if r["data_ok"]}
    accepted = accepted_from(servers, "srv", legit, PUBLISHED)
    assert worked_ports <= accepted, (
        f"srv's log lacks sessions the client counts as worked: {worked_ports - accepted}"
    )
    early = [e for e in server_events(agent) if e["event"] == "early_drop"][drops_before:] if agent else []
    point = Point(
        rate=rate,
        measured_rate=round(measured, 1),
        syns=len(syns),
        legit=len(records),
        worked=len(worked_ports),
        counters=fw.counters(),
        peak_attacker=table.peak(SPOOFED),
        peak_table=table.peak(),
        failed_syns_seen=len(seen),
        table=table,
        early_drops=sum(e["deleted"] for e in early),
        destroyed=sum(1 for e in destroyed.events() if e.src == SPOOFED),
        events_lost=destroyed.lost,
    )
    return point, records, evidence


def defence_points(
    sides: list[Side], case: Case, collected: dict[str, Any], name: str, within: Path | None = None
) -> list[Point]:
    """The defence `name` loaded on every rate's firewall, its point at every attack rate
    (at once, one firewall each, but for ONE_AT_A_TIME); collected for the comparison of
    every defence. The evidence in `within` (default: the case's folder)."""
    for side in sides:
        on = f" ({side.label})" if side.label else ""
        case.keep(side.fw.apply_policy(DEFENCES[name]), f"ruleset, {name}{on}")
    plans = plan_points(case)
    folder = within or case.path
    jobs = [partial(attack_point, side, plan, folder) for side, plan in zip(sides, plans, strict=True)]
    measured = [job() for job in jobs] if name in ONE_AT_A_TIME else at_once(jobs)
    for _point, records, evidence in measured:
        case.note_load(records)
        for path, what in evidence:
            case.keep(path, what)
    points = [point for point, _records, _evidence in measured]
    collected[name] = points
    return points


@pytest.mark.ports(PER_CASE_PORTS)
@pytest.mark.parametrize("name", list(DEFENCES))
def test_table_exhaustion(sides, case, collected, name):
    """Session-table exhaustion by a bounded SYN flood, legitimate success rate per attack rate"""
    points = defence_points(sides, case, collected, name)
    rows = {
        f"{p.rate} SYN/s": {
            "measured SYN/s": p.measured_rate,
            "legitimate worked": f"{p.worked}/{p.legit}",
            "legitimate failed (SYN seen at the firewall)": p.failed_syns_seen,
            "attacker's sessions at most": p.peak_attacker,
            "dropped, table full": p.counters.get("drop_table_full", 0),
            "dropped, per source": p.counters.get("drop_per_source", 0),
            "SYN proxy answered": p.counters.get("synproxied", 0),
            "early-dropped (agent)": p.early_drops,
            "attacker's sessions removed (conntrack events)": p.destroyed,
        }
        for p in points
    }
    case.figure("per attack rate", rows)
    for p in points:
        where = f"{name}, {p.rate} SYN/s ({case.path / f'{p.rate}-per-s'})"
        if p.rate:
            assert p.syns >= 0.95 * p.rate * ATTACK_TIME, (
                f"{where}: only {p.syns} attack SYNs reached the firewall"
            )
        # Every failed legitimate session reached the firewall: the loss is the firewall's,
        # and its drop counters account for it.
        failed = p.legit - p.worked
        assert p.failed_syns_seen == failed, f"{where}: {failed} failed, {p.failed_syns_seen} SYNs seen"
        # (every reason: early drop may delete a legitimate session in its handshake, whose
        # SYN-ACK then finds no session and is dropped as invalid)
        drops = sum(p.counters.get(reason, 0) for reason in DROP_COUNTERS)
        assert drops >= failed, (
            f"{where}: {failed} legitimate sessions failed, the firewall counted {drops} drops"
        )
    calm, top = points[0], points[-1]
    assert calm.success >= 95, f"{name} without an attack: {calm.worked}/{calm.legit} worked"
    if name == "no defence":
        assert top.peak_attacker >= 0.9 * CAPACITY, (
            f"the attacker held at most {top.peak_attacker} of {CAPACITY}"
        )
        assert top.success <= 50, (
            f"at {top.rate} SYN/s {top.success:.0f}% still worked: the table never filled"
        )
        # Half-open sessions stay a minute: none of the attacker's left during an attack.
        assert all(p.destroyed == 0 for p in points), [p.destroyed for p in points]
    elif name == "half-open timeout 1s":
        # At a rate below capacity per second, half-open sessions leave before it fills.
        mid = points[2]
        assert mid.success >= 95 and mid.peak_attacker < CAPACITY, (
            f"{mid.rate} SYN/s: {mid.success:.0f}% worked, the attacker held at most {mid.peak_attacker}"
        )
        assert mid.events_lost or mid.destroyed >= 0.5 * mid.syns, (
            f"{mid.rate} SYN/s: {mid.destroyed} of {mid.syns} half-open sessions left within the attack"
        )
    elif name == "SYN proxy":
        for p in points:
            assert p.success >= 95 and p.peak_attacker == 0, (
                f"{p.rate} SYN/s: {p.success:.0f}% worked, attacker held {p.peak_attacker} sessions"
            )
        assert top.counters["synproxied"] >= top.syns, f"the proxy answered {top.counters['synproxied']}"
    elif name == "per-source limit 20":
        for p in points:
            assert p.success >= 95 and p.peak_attacker <= 20, (
                f"{p.rate} SYN/s: {p.success:.0f}% worked, attacker held {p.peak_attacker} sessions"
            )
        assert top.counters["drop_per_source"] >= top.syns - 20 - 5
    elif name == "early drop":
        for p in points:
            assert p.success >= 90, f"{p.rate} SYN/s: {p.success:.0f}% worked"
        assert top.early_drops > 0 and top.peak_attacker < CAPACITY, (
            f"early drop deleted {top.early_drops}; the attacker held at most {top.peak_attacker}"
        )
        for p in points:
            # The agent's report against the kernel's events: what it deleted was the
            # attacker's (and at most a few legitimate sessions caught in their handshake).
            assert p.events_lost or p.destroyed <= p.early_drops <= p.destroyed + p.legit, (
                f"{p.rate} SYN/s: the agent reports {p.early_drops} deleted, conntrack events show "
                f"{p.destroyed} of the attacker's sessions removed"
            )
    t0 = {p.rate: p.table.samples[0].time for p in points}
    occupancy_figure(
        {f"{p.rate} SYN/s": [(s.time - t0[p.rate], s.open) for s in p.table.samples] for p in points},
        {f"capacity {CAPACITY}": CAPACITY},
        case.plot_path(
            f"occupancy-{safe_name(name)}", f"{name}: open TCP sessions in the firewall's table over time"
        ),
        f"{name}: sessions in the table during each attack ({ATTACK_TIME} s)",
    )


@pytest.mark.ports(len(DEFENCES) * PER_CASE_PORTS)  # room to run every defence itself
def test_table_exhaustion_compared(sides, case, collected):
    """Legitimate success rate against attack rate, every defence on the same attack"""
    # the defences this selection did not run: run them now (one rule, testcases/common.py),
    # each in a folder of its own (a full run has run them all: no such figure)
    ran_here = rerun_missing(
        collected,
        DEFENCES,
        lambda name: defence_points(sides, case, collected, name, case.path / safe_name(name)),
    )
    if ran_here:
        case.figure("defences run by this case (not selected on their own)", ran_here)
    exhaustion = {name: collected[name] for name in DEFENCES}
    curves = {name: [(p.measured_rate, p.success) for p in points] for name, points in exhaustion.items()}
    table = {
        name: {f"{p.rate} SYN/s": round(p.success) for p in points} for name, points in exhaustion.items()
    }
    case.figure("legitimate sessions that worked (%)", table)
    none_top = exhaustion["no defence"][-1].success
    for name in ("SYN proxy", "per-source limit 20", "early drop"):
        top = exhaustion[name][-1].success
        assert top >= none_top + 40, f"{name}: {top:.0f}% at the top rate, no defence {none_top:.0f}%"
    mid = ATTACK_RATES.index(80)
    assert exhaustion["half-open timeout 1s"][mid].success > exhaustion["no defence"][mid].success
    attack_figure(
        curves,
        case.plot_path("exhaustion", "legitimate success rate against attack rate, per defence"),
        f"SYN flood into a table of {CAPACITY}: legitimate sessions that worked",
    )
