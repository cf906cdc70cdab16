"""`sessionlab try`'s run: the scenario's lab with its firewalls configured, the user's
server and client programs in their hosts, the planned events at their times, captures on
both sides of every firewall and the session tables sampled; then the report.

The programs run through the lab's process supervisor (owned, logged, stopped by PID),
each in its own process group, so a shell command's children end with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabTimeout
from lab.tryout import analysis
from lab.tryout.plan import Event, TryPlan

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0  # s the server has to listen on its port
SYNC_MODES = ("sync", "sync-defer")  # the firewalls sync (conntrackd); sync-defer also defers


@dataclass
class TryOutcome:
    """What the run showed, for the terminal and the exit status."""

    verdict: str
    status: int
    report: Path
    folder: Path
    lines: list[str] = field(default_factory=list)


def _argv(plan: TryPlan, which: str, server_addr: str, client_addr: str) -> list[str]:
    env = [f"{k}={v}" for k, v in plan.env(server_addr, client_addr).items()]
    return ["env", *env, "sh", "-c", plan.command(which, server_addr)]


def _end(lab: Any, proc: Any) -> int | None:
    """Stop a program and what its shell started, then by PID through the supervisor."""
    _end_group(proc)
    return lab.stop(proc)


def _end_group(proc: Any) -> None:
    """SIGTERM to a program's process group (mnexec -d made it the leader), so what its
    shell started ends with it; nothing once it has been reaped (its id may be reused)."""
    if proc.running():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)


def _start(lab: Any, host: str, argv: list[str], name: str) -> Any:
    """A user's program in a host; its process group ends with the lab however the run
    ends (Ctrl-C included)."""
    proc = lab.start(host, argv, name)
    lab.on_close(lambda: _end_group(proc))
    return proc


def _listening(lab: Any, host: str, port: int) -> bool:
    return bool(lab.run(host, ["ss", "-Hltnu", "sport", "=", f":{port}"], check=False).strip())


def _do_event(lab: Any, plan: TryPlan, event: Event, downed: list[str]) -> str:
    """Carry out an event now; what was done, in words. Nodes whose links it took down
    are added to `downed` (brought up again before the captures stop)."""
    scenario = plan.scenario
    if event.kind == "expire":
        done = []
        for fw in scenario.firewalls:
            deleted = 0
            for proto in ("tcp", "udp"):
                out = lab.run(fw, ["conntrack", "-D", "-p", proto, "--dport", str(plan.port)], check=False)
                found = re.search(r"(\d+) flow entries have been deleted", out)
                deleted += int(found.group(1)) if found else 0
            done.append(f"{deleted} {'entry' if deleted == 1 else 'entries'} deleted on {fw}")
        return "; ".join(done)
    if event.kind == "cut":
        intfs = lab.set_links(scenario.server, up=False)
        downed.append(scenario.server)
        return f"{scenario.server}'s link down ({', '.join(intfs)})"
    # failover: the firewall holding the application's session fails
    owner = next(
        (
            fw
            for fw in scenario.firewalls
            if any(plan.port in (s.dport, s.sport) for s in lab.node(fw).sessions())
        ),
        next(iter(scenario.firewalls)),
    )
    intfs = lab.set_links(owner, up=False)
    downed.append(owner)
    return f"{owner} failed: its links down ({', '.join(intfs)})"


def run_try(plan: TryPlan, results: Path, say: Callable[[str], None], argv: list[str]) -> TryOutcome:
    """Build, run, record, report into a new run folder (its run.json says `argv`, the
    command line); a run that fails before its report leaves no folder (`settle`). `say`
    shows progress lines as they happen."""
    from lab.catalog import ROOT
    from lab.results import new_run, settle, write_run_info

    folder = new_run(results)
    write_run_info(folder, argv, ROOT)
    try:
        outcome = _run(plan, folder, say)
    except BaseException:
        settle(folder, ran=False)
        raise
    settle(folder, ran=True)
    return outcome


def _run(plan: TryPlan, folder: Path, say: Callable[[str], None]) -> TryOutcome:
    from lab import topology
    from lab.capture import Capture, SessionRecorder
    from lab.net import Lab
    from lab.preflight import check_host
    from lab.report import write_report
    from lab.results import Case

    scenario = plan.scenario
    check_host()
    controller = None
    if scenario.controller:
        fabric = plan.mode or "symmetric"
        # sync is the firewalls' (conntrackd, deferring or not); the fabric then hashes
        # each side on its own
        controller = topology.controller_for(
            scenario.topology, mode="independent" if fabric in SYNC_MODES else fabric
        )
    name = f"try-{scenario.name}"
    case = Case(name=name, path=folder / name, title=f"try {scenario.name}: {plan.client_cmd}")
    case.path.mkdir(parents=True, exist_ok=True)
    events: list[str] = []
    downed: list[str] = []
    timed_out, ready_problem = False, ""
    started = time.time()
    with Lab(topology.load(scenario.topology), folder / f"{name}-lab", controller=controller) as lab:
        say(f"lab {scenario.name} ({lab.tag}) is up: {scenario.what}")
        for fw in scenario.firewalls:
            node = lab.node(fw)
            case.keep(node.apply_policy(plan.policy), f"ruleset loaded on {fw}")
            node.reset()
            if plan.mode in SYNC_MODES:
                node.start_sync(defer=plan.mode == "sync-defer")
        server_addr, client_addr = lab.ip(scenario.server), lab.ip(scenario.client)
        with contextlib.ExitStack() as stack:
            captures = {
                fw: tuple(
                    stack.enter_context(Capture(lab, fw, intf, case.path, intf, bpf=f"port {plan.port}"))
                    for intf in sides
                )
                for fw, sides in scenario.firewalls.items()
            }
            tables = {fw: stack.enter_context(SessionRecorder(lab, fw)) for fw in scenario.firewalls}
            server = _start(lab, scenario.server, _argv(plan, "server", server_addr, client_addr), "server")
            say(f"server on {scenario.server} ({server_addr}): {plan.command('server', server_addr)}")
            client = None
            try:
                lab.wait(
                    lambda: _listening(lab, scenario.server, plan.port) or not server.running(),
                    READY_TIMEOUT,
                    f"the server to listen on port {plan.port}",
                )
                if not server.running():
                    ready_problem = f"the server exited before listening on port {plan.port}"
            except LabTimeout as exc:  # the run's outcome, not bad input
                ready_problem = str(exc)
            t0 = time.time()
            if not ready_problem:
                client = _start(
                    lab, scenario.client, _argv(plan, "client", server_addr, client_addr), "client"
                )
                say(f"client on {scenario.client} ({client_addr}): {plan.command('client', server_addr)}")
                timed_out = _supervise(lab, plan, client, t0, events, downed, say)
            else:
                say(ready_problem)
            client_rc = _end(lab, client) if client is not None else None
            server_running = server.running()
            server_rc = _end(lab, server)
            for node in downed:  # a capture stops by sending a marker out of its interface
                lab.set_links(node, up=True)
                events.append(f"t={time.time() - t0:.1f}s: {node}'s links up again (the programs ended)")
        for fw, (inside, outside) in captures.items():
            case.keep(inside.path, f"capture on {fw}'s client side ({inside.intf})")
            case.keep(outside.path, f"capture on {fw}'s server side ({outside.intf})")
            case.keep(tables[fw].save(case.path / f"sessions-{fw}.json"), f"{fw}'s session table over time")
        for proc in (server,) + ((client,) if client is not None else ()):
            case.keep(proc.log_path, f"{proc.name}'s output (full log)")
        figures = _figures(plan, captures, tables, t0, server_addr, client_addr)
        _timeline(plan, captures, t0, client_addr, case)
        server_out, client_out = server.output(), client.output() if client is not None else ""
    verdict, status = analysis.verdict(client_rc, timed_out)
    if ready_problem:
        verdict, status = "failed", 1
    client_words = (
        "not started: " + ready_problem if client is None else analysis.exit_words(client_rc, timed_out)
    )
    if timed_out:
        client_words = f"no exit within --limit {plan.limit:g}s, {client_words}"
    server_words = analysis.exit_words(server_rc, server_running)
    case.figure("scenario", f"{scenario.name}: {scenario.what}")
    case.figure("commands", {"server": plan.server_cmd, "client": plan.client_cmd})
    case.figure("environment of both programs", plan.env(server_addr, client_addr))
    case.figure("firewall policy", _policy_words(plan))
    case.figure("events (s after the client started)", events or ["none"])
    case.figure("client", client_words)
    case.figure("server", server_words)
    case.figure("client's output (last lines)", analysis.last_lines(client_out) or ["(none)"])
    case.figure("server's output (last lines)", analysis.last_lines(server_out) or ["(none)"])
    for key, value in figures.items():
        case.figure(key, value)
    case.verdict = verdict
    case.message = "" if verdict == "passed" else f"client: {client_words}"
    case.duration = time.time() - started
    case.save()
    report = write_report(folder, [case], f"sessionlab try {scenario.name}")
    lines = [
        f"client ({scenario.client}): {client_words}",
        *[f"  | {line}" for line in analysis.last_lines(client_out)],
        f"server ({scenario.server}): {server_words}",
        *[f"  | {line}" for line in analysis.last_lines(server_out)],
        *[f"event {e}" for e in events],
        f"sessions held on port {plan.port}: "
        + (", ".join(figures["application's sessions over time"]) or "none"),
        *[
            f"  {life['firewall']} {life['session']}: {' > '.join(life['states'])}, seen "
            f"t={life['first seen (s)']:g}-{life['last seen (s)']:g}s"
            f"{', held at the end' if life['held at the end'] else ', gone'}"
            for life in figures["application's sessions"]
        ],
        *[f"packets: {line}" for line in figures["where the application's packets stopped"]],
        f"verdict: {verdict} ({ready_problem or 'the client: ' + client_words}); report {report}",
    ]
    return TryOutcome(verdict, status, report, folder, lines)


def _supervise(
    lab: Any,
    plan: TryPlan,
    client: Any,
    t0: float,
    events: list[str],
    downed: list[str],
    say: Callable[[str], None],
) -> bool:
    """Wait for the client to exit, carrying out the events at their times; True when it
    outlived --limit."""
    pending = list(plan.events)
    deadline = t0 + plan.limit
    while True:
        due = t0 + pending[0].at if pending else deadline
        try:
            client.popen.wait(max(0.0, min(due, deadline) - time.time()))
            return False
        except subprocess.TimeoutExpired:
            pass
        now = time.time()
        if pending and now >= t0 + pending[0].at:
            event = pending.pop(0)
            done = _do_event(lab, plan, event, downed)
            line = f"t={now - t0:.1f}s {event.kind}: {done}"
            events.append(line)
            say(line)
        elif now >= deadline:
            return True


def _figures(plan: TryPlan, captures: dict[str, tuple[Any, ...]], tables: dict[str, Any], t0: float,
             server_addr: str, client_addr: str) -> dict[str, Any]:  # fmt: skip
    """What the evidence shows: sessions held, and where the packets stopped."""
    snapshots = [(fw, snap.time, snap.sessions) for fw, rec in tables.items() for snap in rec.snapshots]
    snapshots.sort(key=lambda x: x[1])
    counts, lives = analysis.app_sessions(snapshots, plan.port, t0)
    client_side = [analysis.Seen(c.intf, s) for c, _ in captures.values() for s in c.segments()]
    server_side = [analysis.Seen(c.intf, s) for _, c in captures.values() for s in c.segments()]
    outward = analysis.direction("client", client_side, server_side, plan.port, t0)
    back = analysis.direction("server", server_side, client_side, plan.port, t0)
    names = " or ".join(plan.scenario.firewalls)
    return {
        "application's sessions over time": [f"t={t:g} s: {n}" for t, n in counts],
        "application's sessions": lives,
        "where the application's packets stopped": analysis.where_stopped(outward, back, names),
        f"client {client_addr} to server {server_addr}:{plan.port}, through {names}": outward.to_dict(),
        f"server {server_addr}:{plan.port} to client {client_addr}, through {names}": back.to_dict(),
    }


def _timeline(
    plan: TryPlan, captures: dict[str, tuple[Any, ...]], t0: float, client_addr: str, case: Any
) -> None:
    """The client's first connection on both sides of every firewall, with the events."""
    from lab.plot import packet_timeline

    syns = sorted(
        (
            s
            for pair in captures.values()
            for c in pair
            for s in c.segments()
            if s.flags == "S" and s.src == client_addr
        ),
        key=lambda s: s.time,
    )
    if not syns:
        return
    lanes = {}
    for fw, (client_side, server_side) in captures.items():
        lanes[f"{fw} server side ({server_side.intf})"] = server_side.segments()
        lanes[f"{fw} client side ({client_side.intf})"] = client_side.segments()
    marks = {event.label: t0 + event.at for event in plan.events}
    sport = syns[0].sport
    packet_timeline(
        lanes,
        (client_addr, sport),
        t0,
        marks,
        case.plot_path(
            "timeline", f"the client's connection from port {sport} on both sides of the firewall"
        ),
        f"{client_addr}:{sport} to port {plan.port}: segments into and out of the firewall",
        xlabel="time since the client started (s)",
    )


def _policy_words(plan: TryPlan) -> dict[str, Any]:
    p = plan.policy
    words: dict[str, Any] = {
        "from": str(plan.policy_file) if plan.policy_file else "the scenario's default",
        "TCP idle timeout (s)": p.tcp_timeout,
    }
    if p.allow_inbound:
        words["published services"] = [f"{s.proto}/{s.port} to {s.address or 'any'}" for s in p.allow_inbound]
    if plan.mode:
        words["controller mode"] = plan.mode
    return words
