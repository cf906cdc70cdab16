"""S2, asymmetric paths through redundant firewalls (SCENARIOS.md): session sync and its
race.

    h1 h2 h3 -- so --+-- [fw1] --+-- si -- srv1 srv2
                     |    ^      |
                     |    | conntrackd copies each new entry over the FW1-FW2 link
                     |    v      | (a1-a2: its delay swept)
                     +-- [fw2] --+

- Fix c, session sync: conntrackd copies FW1's entries to FW2, so FW2 accepts the return
  packets. Measure the sync delay, and the race where a reply arrives before the entry.
- Figures: the sync lag distribution, and the share of split sessions that lose the race
  against the delay on the FW1-FW2 link.

The fabric splits sessions (each fabric switch hashes on its own); both firewalls run
conntrackd. Evidence: each firewall's conntrack events (a session's creation on one and
its entry on the other), captures of SYN-ACKs into and out of each firewall, the clients'
results and the controller's table.
"""

from __future__ import annotations

import statistics
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from lab.capture import Capture, SessionEvents
from lab.controller import ControllerTable
from lab.plot import race_sweep_figure, sync_lag_figure
from lab.results import Case
from lab.traffic import run_sessions_from
from testcases.common import dashed
from testcases.s2_common import (
    CLIENTS,
    ECHO_PORTS,
    FIREWALLS,
    MODES,
    RETRANSMITTED_TIMEOUT,
    SYN_ACK,
    prepare,
    servers_of,
)

LAB_TOPOLOGY = "s2"
ECHO_SERVERS = ECHO_PORTS  # the shared `servers` fixture starts them


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
        results = case.note_load(
            run_sessions_from(
                lab, CLIENTS, servers_of(lab), sessions, concurrency=4, timeout=timeout, first_port=first
            )
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
