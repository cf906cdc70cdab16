"""S2, asymmetric paths through redundant firewalls (SCENARIOS.md).

Outside hosts - outside fabric switch - FW1 | FW2 - access switches (FW1-FW2 link) - inside
fabric switch - servers. The os-ken controller (controllers/fwlb) runs the fabric; each case
restarts it in the mode under test. 200 short TCP sessions per mode from three outside hosts;
a client waits 3 s for its connection: long enough for one SYN-ACK retransmission (1 s).

Every figure is read from evidence: the clients' results, each firewall's conntrack (with
per-direction packet counts), captures (SYN-ACKs into and out of each firewall, the FW1-FW2
link), and the controller's table, which is cross-checked against the firewalls, never
taken alone.
"""

from __future__ import annotations

import ipaddress
import statistics
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from lab import conntrack
from lab.capture import Capture, SessionEvents
from lab.config import FirewallPolicy, Service
from lab.controller import ControllerTable
from lab.plot import failover_figure, mode_figure, race_sweep_figure, sync_lag_figure
from lab.results import Case, safe_name
from lab.traffic import (
    bulk_outcome,
    bulk_series,
    run_sessions_from,
    start_bulk_receiver,
    start_bulk_sender,
    start_echo_server,
)


def dashed(value: str) -> str:
    """A case id without spaces, so that `-k` and node ids select it as typed."""
    return value.replace(" ", "-")


LAB_TOPOLOGY = "s2"
CLIENTS = ["h1", "h2", "h3"]
SERVER_HOSTS = ["srv1", "srv2"]
SERVICE, BULK = 8080, 9000
SESSIONS = 200
FIREWALLS = ("fw1", "fw2")
SYN_ACK = "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"
SYN = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
INTERVAL = 0.02  # the bulk receiver's reporting interval (s)
MPLS_BASE = 100  # controllers.fwlb.logic.MPLS_LABEL_BASE: label 100 + n = deliver to fwN
# With sync, a split session whose SYN-ACK outran the copy opens at the SYN-ACK's
# retransmission (1.0-1.04 s) and then waits 2.43-2.50 s for its echo (measured: the
# sync cases' "client timeout margins"); under a 3 s client timeout that left 0.5 s. The
# sync cases give each wait twice the longest measured.
RETRANSMITTED_TIMEOUT = 5.0


@dataclass(frozen=True)
class Mode:
    """How the fabric and the firewalls handle a session whose directions it splits."""

    name: str
    fabric: str  # the controller's mode
    sync: bool = False
    handoff: str = "off"  # the firewalls' own path correction
    what: str = ""
    client_timeout: float = 3.0  # s: each connect and echo wait (the slowest here: 0.12 s)

    @property
    def corrects(self) -> bool:
        return self.fabric.startswith("correction") or self.handoff != "off"


MODES = {
    m.name: m
    for m in (
        Mode("independent", "independent", what="each fabric switch hashes on its own"),
        Mode("symmetric", "symmetric", what="both fabric switches hash alike"),
        Mode("correction-mac", "correction-mac", what="the fabric rewrites the MAC to the owner"),
        Mode("correction-mpls", "correction-mpls", what="the fabric pushes an MPLS label naming the owner"),
        Mode("firewall-route", "independent", handoff="route", what="the firewall routes to its peer"),
        Mode("firewall-vxlan", "independent", handoff="vxlan", what="the firewall tunnels to its peer"),
        Mode(
            "sync",
            "independent",
            sync=True,
            what="conntrackd copies sessions to the peer",
            client_timeout=RETRANSMITTED_TIMEOUT,
        ),
    )
}


def policy(lab, mode: Mode) -> FirewallPolicy:
    """The servers' subnet (from the topology) published on the service and bulk ports."""
    intf = lab.node(SERVER_HOSTS[0]).defaultIntf()
    inside = str(ipaddress.ip_interface(f"{intf.IP()}/{intf.prefixLen}").network)
    return FirewallPolicy(
        tcp_timeout=120,
        allow_inbound=(Service(SERVICE, address=inside), Service(BULK, address=inside)),
        peer_handoff=mode.handoff,
    )


@pytest.fixture
def servers(lab):
    """This case's echo servers (ended with it): their logs hold only its sessions."""
    return {s: start_echo_server(lab, s, [SERVICE], f"echo-{s}") for s in SERVER_HOSTS}


@pytest.fixture(scope="module")
def modes_run() -> dict[str, dict[str, Any]]:
    """Each mode's figures as this module's cases measured them (any selection)."""
    return {}


def prepare(lab, mode: Mode, external_cache: bool = False) -> None:
    """The controller in the mode's fabric mode; both firewalls with the mode's policy,
    empty tables and zeroed counters; sync on or off."""
    lab.restart_controller(mode=mode.fabric)
    for name in FIREWALLS:
        fw = lab.node(name)
        fw.stop_sync()
        fw.apply_policy(policy(lab, mode))
        fw.reset()
    if mode.sync:
        for name in FIREWALLS:
            lab.node(name).start_sync(external_cache=external_cache)


def servers_of(lab) -> list[str]:
    return [f"{lab.ip(s)}:{SERVICE}" for s in SERVER_HOSTS]


def conntrack_paths(
    lab, mine: set[tuple[str, int]], case: Case, folder
) -> dict[tuple[str, int], dict[str, set[str]]]:
    """Per session of this case: the firewalls whose conntrack counted packets in the
    original direction (client to server) and in the reply direction."""
    paths: dict[tuple[str, int], dict[str, set[str]]] = {k: {"in": set(), "out": set()} for k in mine}
    for name in FIREWALLS:
        text = lab.run(name, ["conntrack", "-L"], merge=False)
        path = folder / f"conntrack-{name}.txt"
        path.write_text(text)
        case.keep(path, f"{name}'s session table after the run (conntrack -L)")
        table = conntrack.parse_table(text)
        for s in table:
            key = (s.src, s.sport or 0)
            if key not in paths:
                continue
            if s.packets:
                paths[key]["in"].add(name)
            if s.reply_packets:
                paths[key]["out"].add(name)
    return paths


def link_capture(lab, mode: Mode, folder) -> Capture:
    """A capture on the FW1-FW2 link where the mode's corrected packets cross it."""
    if mode.handoff != "off":
        return Capture(lab, "fw1", "fw1-sync", folder, "fw1-fw2-link", bpf="tcp or udp port 4789")
    node, intf = lab.link_intf("a1", "a2")
    return Capture(lab, node, intf, folder, "fw1-fw2-link", bpf="tcp or mpls")


def sessions_case(lab, case: Case, mode: Mode, folder) -> dict[str, Any]:
    """Run SESSIONS sessions through the fabric in `mode`; every figure from evidence."""
    prepare(lab, mode)
    first = case.take_ports(SESSIONS).start
    caps = [Capture(lab, fw, f"{fw}-in", folder, f"{fw}-in-synack", bpf=SYN_ACK) for fw in FIREWALLS]
    caps.append(link_capture(lab, mode, folder))
    caps += [Capture(lab, fw, f"{fw}-out", folder, f"{fw}-out-syn", bpf=SYN) for fw in FIREWALLS]
    with ExitStack() as running:
        for c in caps:
            running.enter_context(c)
        results = run_sessions_from(
            lab,
            CLIENTS,
            servers_of(lab),
            SESSIONS,
            concurrency=8,
            timeout=mode.client_timeout,
            first_port=first,
        )
    mine = {(r["client"], int(r["sport"])) for r in results}
    table = ControllerTable(lab.paths.root / "controller-sessions.json").wait_for(mine)
    kernel = conntrack_paths(lab, mine, case, folder)
    for c in caps:
        case.keep(c.path, f"capture {c.name}")
    synacks = {c.node: Counter((s.dst, s.dport) for s in c.segments()) for c in caps[:2]}
    link = caps[2].segments()
    # The firewall each SYN entered (captured on its outside interface).
    syn_fw = {(s.src, s.sport): c.node for c in caps[3:] for s in c.segments()}

    opened = {(r["client"], int(r["sport"])) for r in results if r["data_ok"]}
    split = {k for k, s in table.items() if s.via != s.reply_via}
    # Cross-checks of the controller's table against the firewalls' own tables.
    disagree = []
    # With sync, the peer's update replaces a firewall's own entry, counters and all
    # (conntrackd), so the counters can name no firewall for some sessions: those are
    # counted, and the SYN capture alone names their firewall.
    replaced = 0
    for key, s in table.items():
        if syn_fw.get(key) != s.via:
            disagree.append(f"{key}: SYN via {s.via} (controller), captured entering {syn_fw.get(key)}")
        if mode.sync and not kernel[key]["in"]:
            replaced += 1
        elif kernel[key]["in"] != {s.via}:
            disagree.append(
                f"{key}: SYN via {s.via} (controller), conntrack counted it on {kernel[key]['in']}"
            )
        if key not in opened or mode.sync:
            continue
        wanted = {s.via} if mode.corrects else {s.reply_via}
        if kernel[key]["out"] != wanted:
            disagree.append(
                f"{key}: replies expected on {wanted}, conntrack counted them on {kernel[key]['out']}"
            )
    reasons: Counter[str] = Counter()
    for key in sorted(mine - opened):
        s = table[key]
        seen = synacks[s.reply_via][key] if s.reply_via else 0
        if s.via != s.reply_via:
            where = " (captured there, no session: dropped)" if seen and not kernel[key]["out"] else ""
            reasons[f"split path: SYN via {s.via}, SYN-ACK to {s.reply_via}{where}"] += 1
        else:
            reasons[f"same firewall {s.via}, failed"] += 1
    corrected: dict[str, int] = {}
    marked_for_owner = "split sessions whose replies crossed the link marked for the owner"
    if mode.corrects:
        corrected[marked_for_owner] = 0
        for key in split & opened:
            owner = int(table[key].via[-1])
            on_link = [x for x in link if (x.dst, x.dport) == key]
            if mode.name == "correction-mac":
                marked = [
                    x for x in on_link if x.eth_dst == lab.node(f"fw{owner}").intf(f"fw{owner}-in").MAC()
                ]
            elif mode.name == "correction-mpls":
                marked = [x for x in on_link if x.mpls[:1] == (MPLS_BASE + owner,)]
            elif mode.handoff == "route":
                peer = lab.node(f"fw{owner}").intf(f"fw{owner}-sync").MAC()
                marked = [x for x in on_link if x.eth_dst == peer]
            else:
                marked = [x for x in on_link if x.vxlan is not None]
            corrected[marked_for_owner] += bool(marked)
    per_fw = Counter(s.via for s in table.values())
    per_fw_kernel = Counter(name for k in mine for name in kernel[k]["in"])
    per_fw_captured = Counter(syn_fw.get(k) for k in mine)
    figures: dict[str, Any] = {
        "sessions": len(results),
        "opened and carried data": len(opened),
        "success rate": len(opened) / len(results),
        "sessions per firewall (conntrack, SYN direction)": dict(sorted(per_fw_kernel.items())),
        "sessions per firewall (SYN captured entering it)": dict(sorted(per_fw_captured.items())),
        "sessions per firewall (controller)": dict(sorted(per_fw.items())),
        "sessions whose directions the fabric split (controller)": len(split),
        "controller and conntrack or captures disagree": len(disagree),
        "failure reasons": dict(reasons),
        **corrected,
    }
    for key, value in figures.items():
        case.figure(key, value)

    ev = f"(evidence in {folder})"
    assert len(results) == SESSIONS, f"the clients reported {len(results)} of {SESSIONS} sessions"
    assert not disagree, f"the controller's table and the firewalls' conntrack disagree: {disagree[:5]} {ev}"
    if mode.sync:
        figures["entries whose counters the peer's sync replaced"] = replaced
        case.figure("entries whose counters the peer's sync replaced", replaced)
    assert min(per_fw_captured.get("fw1", 0), per_fw_captured.get("fw2", 0)) >= SESSIONS // 5, (
        f"not spread: {per_fw_captured}"
    )
    if mode.name == "independent":
        assert 0.2 * SESSIONS <= len(mine - opened) <= 0.8 * SESSIONS, (
            f"expected about half to fail: {figures}"
        )
        assert mine - opened == split, f"the failed sessions should be exactly the split ones: {figures} {ev}"
        assert all("dropped" in k for k in reasons), (
            f"every failed session's SYN-ACK should be captured and dropped: {reasons}"
        )
    else:
        assert opened == mine, f"{mode.name}: {len(mine - opened)} sessions failed: {dict(reasons)} {ev}"
        if mode.name == "symmetric":
            assert not split, f"symmetric mode split {len(split)} sessions"
        else:
            assert len(split) >= SESSIONS // 5, (
                f"{mode.name}: the fabric should still split paths: {len(split)}"
            )
    if mode.corrects:
        n = corrected[marked_for_owner]
        assert n == len(split), (
            f"{mode.name}: {len(split) - n} corrected sessions not seen on the FW1-FW2 link {ev}"
        )
        if mode.handoff != "off":
            handed = {name: lab.node(name).counters()["handed_to_peer"] for name in FIREWALLS}
            case.figure("packets each firewall handed to its peer (nft counter)", handed)
            assert sum(handed.values()) >= len(split), (
                f"handoff counters {handed} below {len(split)} split sessions"
            )
    return figures


@pytest.mark.parametrize("mode", list(MODES))
def test_sessions_per_mode(lab, servers, case: Case, modes_run, mode):
    """Many short sessions per fabric mode: which open, over which firewalls, why others fail"""
    modes_run[mode] = sessions_case(lab, case, MODES[mode], case.path)


@pytest.mark.ports(len(MODES) * SESSIONS)  # it may have to run every mode itself
def test_mode_figure(lab, servers, case: Case, modes_run):
    """Success rate and sessions per firewall for every mode"""
    ran_here = [m for m in MODES if m not in modes_run]
    for name in ran_here:  # modes this selection did not run: run them now
        folder = case.path / safe_name(name)
        folder.mkdir(exist_ok=True)
        modes_run[name] = sessions_case(lab, case, MODES[name], folder)
    case.figure("modes run by this case (not selected on their own)", ran_here)
    rates = {m: round(modes_run[m]["success rate"], 3) for m in MODES}
    case.figure("success rate", rates)
    assert set(rates) == set(MODES)
    assert rates["independent"] < 0.8 and all(r == 1.0 for m, r in rates.items() if m != "independent"), rates
    mode_figure(
        {m: modes_run[m] for m in MODES},
        case.plot_path("modes", "success rate per mode, and sessions per firewall"),
    )


@dataclass
class Race:
    """One run of sessions through synced firewalls, read from captures and event streams."""

    figures: dict[str, Any]
    split: set[tuple[str, int]]
    raced: set[tuple[str, int]]  # split sessions whose SYN-ACK the return firewall dropped
    late: set[tuple[str, int]]  # sessions that opened only after a retransmission
    lags: list[float]


def race_run(lab, case: Case, folder, sessions: int = 100, timeout: float = RETRANSMITTED_TIMEOUT) -> Race:
    """`sessions` sessions through the synced firewalls (prepared by the caller); `timeout`
    each client wait (shorter where no retransmission can rescue a session)."""
    events = {fw: SessionEvents(lab, fw, f"{fw}-events-{folder.name}", only="NEW") for fw in FIREWALLS}
    # SYN-ACKs into each firewall (inside) and out of it (outside): one that went in and
    # never came out was dropped, having come before the synced entry.
    caps = {
        (fw, side): Capture(lab, fw, f"{fw}-{side}", folder, f"{fw}-{side}-synack", bpf=SYN_ACK)
        for fw in FIREWALLS
        for side in ("in", "out")
    }
    first = case.take_ports(sessions).start
    with ExitStack() as running:
        for ctx in [*events.values(), *caps.values()]:
            running.enter_context(ctx)
        results = run_sessions_from(
            lab, CLIENTS, servers_of(lab), sessions, concurrency=4, timeout=timeout, first_port=first
        )
    mine = {(r["client"], int(r["sport"])) for r in results}
    table = ControllerTable(lab.paths.root / "controller-sessions.json").wait_for(mine)
    for ev in events.values():
        case.keep(ev.path, f"session events {ev.firewall}")
    new: dict[str, dict[tuple[str, int], float]] = {fw: {} for fw in FIREWALLS}
    for fw, ev in events.items():
        for e in ev.events():
            key = (e.src, e.sport or 0)
            if e.event == "NEW" and key in mine and e.stamp is not None:
                new[fw].setdefault(key, e.stamp)
    counts = {k: Counter((s.dst, s.dport) for s in c.segments()) for k, c in caps.items()}
    split = {k for k in mine if table[k].via != table[k].reply_via}
    # A split session's SYN-ACKs enter the return firewall; those that never leave it were dropped.
    dropped = {
        k: counts[(table[k].reply_via, "in")][k] - counts[(table[k].reply_via, "out")][k] for k in split
    }
    raced = {k for k, n in dropped.items() if n > 0}
    lags = [abs(new["fw1"][k] - new["fw2"][k]) for k in mine if k in new["fw1"] and k in new["fw2"]]
    opened = {(r["client"], int(r["sport"])): r for r in results if r["data_ok"]}
    late = {k for k, r in opened.items() if r.get("connect_time", 0) > 0.9}
    figures = {
        "sessions": len(results),
        "opened and carried data": len(opened),
        "split sessions (SYN and SYN-ACK through different firewalls)": len(split),
        "entries synced to the peer's kernel table (conntrack events on both)": len(lags),
        "split sessions whose SYN-ACK the return firewall dropped (captured in, not out)": len(raced),
        "share of split sessions whose SYN-ACK was dropped": round(len(raced) / len(split), 3)
        if split
        else 0.0,
        "sessions that opened only after a retransmission (connect > 0.9 s)": len(late),
        "session events lost by the kernel (ENOBUFS)": any(ev.lost for ev in events.values()),
    }
    if lags:
        figures |= {
            "sync lag median (ms)": round(1000 * statistics.median(lags), 3),
            "sync lag max (ms)": round(1000 * max(lags), 3),
        }
    if raced:
        figures["time to open of raced sessions (s)"] = sorted(
            round(opened[k]["connect_time"], 2) for k in raced if k in opened
        )
    assert len(results) == sessions, f"the clients reported {len(results)} of {sessions} sessions"
    assert len(split) >= sessions // 5, f"the independent fabric should split about half: {figures}"
    return Race(figures, split, raced, late, lags)


@pytest.mark.parametrize("cache", ["direct to kernel", "external cache"], ids=dashed)
def test_sync_race(lab, servers, case: Case, cache):
    """Session sync: delay from a session's creation on one firewall to its entry on the other"""
    external = cache == "external cache"
    prepare(lab, MODES["sync"], external_cache=external)
    # With the external cache nothing reaches the peer's kernel: no retransmission rescues
    # a split session, and the sessions that open do so at once (0.01 s).
    race = race_run(lab, case, case.path, timeout=3.0 if external else RETRANSMITTED_TIMEOUT)
    figures, lags = race.figures, race.lags
    for key, value in figures.items():
        case.figure(key, value)
    sync_lag_figure(lags, case.plot_path("lag", f"sync lag ({cache})"), f"conntrackd FTFW, {cache}")
    if external:
        assert lags == [], f"with the external cache no entry should reach the peer's kernel table: {figures}"
        assert figures["opened and carried data"] < 0.8 * figures["sessions"], (
            f"without entries in the kernel, split sessions must fail: {figures}"
        )
        assert figures["sessions"] - figures["opened and carried data"] <= len(race.split), (
            f"only split sessions may fail: {figures}"
        )
    else:
        assert len(lags) >= 0.9 * figures["sessions"], f"entries missing on the peer: {figures}"
        assert figures["opened and carried data"] == figures["sessions"], (
            f"with direct sync every session should open: {figures}"
        )
        assert statistics.median(lags) < 0.05 and max(lags) < 1.0, f"sync lag {figures}"
        late, raced = race.late, race.raced
        # The race and the late openings are the same sessions, both ways.
        assert late == raced, (
            f"late sessions {sorted(late - raced)} had no dropped SYN-ACK; raced sessions "
            f"{sorted(raced - late)} opened at once {figures}"
        )


SYNC_DELAYS = (0, 1, 2, 5, 10, 20)  # ms each way on the FW1-FW2 link (a1-a2)


@pytest.mark.ports(len(SYNC_DELAYS) * 100)
def test_sync_race_against_link_delay(lab, servers, case: Case):
    """Session sync over a slower FW1-FW2 link: how many split sessions lose the race"""
    prepare(lab, MODES["sync"])
    rows = []
    try:
        for delay in SYNC_DELAYS:
            lab.impair("a1", "a2", delay=f"{delay}ms")
            folder = case.path / f"delay-{delay}ms"
            folder.mkdir(exist_ok=True)
            race = race_run(lab, case, folder)
            opened = race.figures["time to open of raced sessions (s)"] if race.raced else []
            rows.append(
                {
                    "delay (ms)": delay,
                    "split": len(race.split),
                    "raced": len(race.raced),
                    "share": race.figures["share of split sessions whose SYN-ACK was dropped"],
                    "late": len(race.late),
                    "raced sessions' median time to open (s)": statistics.median(opened) if opened else None,
                    "sync lag median (ms)": race.figures.get("sync lag median (ms)"),
                }
            )
            assert race.late == race.raced, (
                f"{delay} ms: late sessions and raced sessions differ: {sorted(race.late ^ race.raced)[:5]}"
            )
            assert race.figures["opened and carried data"] == race.figures["sessions"], race.figures
    finally:
        lab.impair("a1", "a2", delay="0ms")
    case.figure("split sessions that lost the race, by delay on the FW1-FW2 link", rows)
    race_sweep_figure(
        rows, case.plot_path("race", "split sessions whose SYN-ACK beat the synced entry, by link delay")
    )
    by_delay = {r["delay (ms)"]: r for r in rows}
    assert by_delay[SYNC_DELAYS[-1]]["share"] >= 0.9, (
        f"at {SYNC_DELAYS[-1]} ms nearly every split session should race: {rows}"
    )
    assert by_delay[SYNC_DELAYS[-1]]["share"] >= by_delay[0]["share"], rows


def gaps_ms(times: list[float], since: float) -> float:
    """The longest interval (ms) between consecutive packets at or after `since`."""
    after = [t for t in times if t >= since]
    return 1000 * max((b - a for a, b in zip(after, after[1:], strict=False)), default=0.0)


@pytest.mark.parametrize("mode", ["sync", "symmetric"])
def test_failover(lab, servers, case: Case, mode):
    """Failover: the firewall carrying a long transfer fails; with sync it goes on, without it breaks"""
    prepare(lab, MODES[mode])
    server = lab.ip("srv1")
    receiver = start_bulk_receiver(lab, "srv1", BULK, f"bulk-receive-{mode}", INTERVAL)
    with Capture(lab, "srv1", "srv1-eth0", case.path, "receiver", bpf=f"tcp port {BULK}") as capture:
        sport = case.take_port()
        sender = start_bulk_sender(
            lab, "h1", server, BULK, f"bulk-send-{mode}", duration=8, sport=sport, user_timeout=3
        )
        key = (lab.ip("h1"), sport)
        table = ControllerTable(lab.paths.root / "controller-sessions.json")
        owner = table.wait_for({key})[key].via
        lab.wait(
            lambda: len(bulk_series(receiver)) >= 1.5 / INTERVAL, 10, "1.5 s of transfer before the failure"
        )
        failed_at = time.time()
        lab.set_links(owner, up=False)
        try:
            sender.popen.wait(20)
            if '"completed"' in sender.output():
                receiver.popen.wait(10)  # it logs its last interval when the sender closes
        finally:
            restored_at = time.time()
            lab.set_links(owner, up=True)
            lab.stop(sender)
            lab.stop(receiver)
    outcome = bulk_outcome(sender) or {"outcome": "no outcome"}
    arrivals = [s.time for s in capture.segments() if (s.src, s.sport) == key and s.payload_len > 0]
    before = [t for t in arrivals if t < failed_at]
    after = [t for t in arrivals if t >= failed_at]
    series = bulk_series(receiver)
    case.keep(capture.path, "capture at the receiver")
    controller = lab.controller
    window = (failed_at - 0.1, restored_at)

    def ms(e: dict[str, Any]) -> str:
        return f"+{1000 * (e['t'] - failed_at):.1f}"

    statuses = [e for e in controller.events("port_status") if window[0] <= e["t"] <= window[1]]
    moves = [
        e
        for e in controller.events("firewall_down") + controller.events("firewall_up")
        if window[0] <= e["t"] <= window[1]
    ]
    moves.sort(key=lambda e: e["t"])
    figures: dict[str, Any] = {
        "failed firewall": owner,
        "outcome": outcome["outcome"],
        "longest gap between data packets before the failure (ms)": round(gaps_ms(before, 0), 1),
        "data packets after the failure": len(after),
        "port-status messages to the controller (up/down, ms after the failure)": [
            f"{'up' if e['up'] else 'down'} {ms(e)}" for e in statuses
        ],
        "firewall liveness changes the controller made (ms after the failure)": [
            f"fw{e['firewall']} {e['event'].split('_')[1]} {ms(e)}" for e in moves
        ],
    }
    if outcome["outcome"] == "completed":
        figures["longest gap between data packets across the failure (ms)"] = round(
            gaps_ms(arrivals, failed_at - 0.5), 1
        )
    else:
        figures["last data packet after the failure (ms)"] = (
            round(1000 * (max(after) - failed_at), 1) if after else None
        )
    for name, value in figures.items():
        case.figure(name, value)
    failover_figure(
        series,
        failed_at,
        case.plot_path("throughput", f"throughput across the failure of {owner}"),
        f"{mode}: {owner} fails during the transfer ({outcome['outcome']})",
        interval=INTERVAL,
    )
    downs = [e for e in moves if e["event"] == "firewall_down"]
    paced = figures["longest gap between data packets before the failure (ms)"]
    assert 0 < paced < 100, f"the transfer should arrive every ~10 ms before the failure: {figures}"
    assert any(not e["up"] for e in statuses), f"no port-status message said down: {figures}"
    assert [e["event"] for e in moves] == ["firewall_down"] and downs[0]["firewall"] == int(owner[-1]), (
        f"the controller should take {owner} down once and keep it down while its links are down "
        f"(port-status flapping held down): {figures} ({controller.proc.log_path})"
    )
    if mode == "sync":
        assert outcome["outcome"] == "completed", (
            f"with sync the transfer should survive: {figures} {outcome}"
        )
        assert after, f"no data after the failure: {figures}"
        gap = figures["longest gap between data packets across the failure (ms)"]
        assert gap < 1000, f"the transfer stalled for {gap} ms: {figures}"
    else:
        assert outcome["outcome"] == "broken", (
            f"without sync the connection should break: {figures} {outcome}"
        )
        late = [t for t in after if t > downs[0]["t"] + 0.1]
        assert not late, (
            f"{len(late)} data packets arrived after the controller moved the sessions: {figures}"
        )
