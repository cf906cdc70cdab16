"""S1-UDP's shared parts (SCENARIOS.md S1 "UDP"): the lab's UDP timeouts, the UDP server's
ports, and `run_flows`: UDP flows from the client through one firewall policy at once,
with captures on both sides of the firewall, its session table and its events.

client, client2 (inside) -- fw -- server (outside); the firewall's UDP timeouts are U = 2 s
for a flow that has not become a stream and S = 4 s for one that has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.capture import Capture, SessionEvents, SessionRecorder, stop_captures
from lab.config import FirewallPolicy
from lab.conntrack import Session, parse_table
from lab.procs import Proc
from lab.results import Case, safe_name
from lab.topology import plan
from lab.traffic.udp import (
    Datagram,
    UdpFlow,
    UdpProbeResult,
    capture_datagrams,
    run_udp_probes,
    start_udp_server,
)
from testcases.s1_common import STRICT

U, S, LONG = 2, 4, 20  # the lab's UDP timeouts (s): unreplied, stream, port LONG_PORT's
# s the client waits past the idle time: the answer comes at the idle time, plus the path's
# delay (a busy machine's switches held one 0.22 s between the server and fw-out)
APP_TIMEOUT = 1.0
PORT, LONG_PORT = 5300, 5301
POLICY = STRICT.with_changes(udp_timeout=U, udp_stream_timeout=S)
OUTSIDE = plan("s1").addresses["fw-out"]  # the firewall's outside address: masquerade's


@dataclass
class Run:
    """Flows run at once through one policy, and their evidence."""

    results: list[UdpProbeResult]
    inside: list[Datagram]  # captured on fw-in
    outside: list[Datagram]  # captured on fw-out
    sessions: SessionRecorder
    events: list[Session]  # conntrack -E of this run's flows (UDP; SessionEvents.events is TCP's)
    server: Proc
    folder: Path
    beside: Any = None  # what `alongside` returned (run_flows)

    def of(self, label: str, idle: float) -> UdpProbeResult:
        return next(r for r in self.results if r.probe.label == label and r.probe.idle == idle)

    def at(
        self, lane: str, src: Any = None, dst: Any = None, data: str = "", after: float = 0.0
    ) -> list[Datagram]:
        """Datagrams captured on `lane` ("inside": fw-in, "outside": fw-out) from `src`
        and/or to `dst` (address, port), their text starting with `data`, after `after`."""
        return [
            d
            for d in getattr(self, lane)
            if (src is None or (d.src, d.sport) == src)
            and (dst is None or (d.dst, d.dport) == dst)
            and d.data.startswith(data)
            and d.time > after
        ]


def run_flows(
    lab,
    fw,
    case: Case,
    name: str,
    policy: FirewallPolicy,
    flows: list[UdpFlow],
    alongside: Callable[[], Any] | None = None,
) -> Run:
    """Load `policy`, start a UDP server, run `flows` at once from the client with captures
    on both sides of the firewall, its session table sampled every 0.2 s and its events;
    keep the evidence. `alongside`: run in a thread while the flows run (what another host
    does meanwhile), under the same evidence; its value in `Run.beside`, its error raised."""
    folder = case.path / safe_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    case.keep(fw.apply_policy(policy), f"ruleset, {name}")
    fw.flush_sessions()
    server = start_udp_server(lab, "server", [PORT, LONG_PORT], f"udp-server-{safe_name(name)}")
    bpf = "udp or icmp"
    with (
        Capture(lab, "fw", "fw-in", folder, "inside-fw-in", bpf=bpf) as inside,
        Capture(lab, "fw", "fw-out", folder, "outside-fw-out", bpf=bpf) as outside,
        SessionRecorder(lab, "fw") as sessions,
        SessionEvents(lab, "fw", f"session-events-{safe_name(name)}") as events,
    ):
        with ThreadPoolExecutor(max_workers=1) as pool:
            beside = pool.submit(alongside) if alongside else None
            results = run_udp_probes(lab, "client", lab.ip("server"), flows)
            value = beside.result() if beside else None
        stop_captures([inside, outside])
    lab.stop(server)
    sports = {r.sport for r in results}
    run = Run(
        results,
        capture_datagrams(inside.path),
        capture_datagrams(outside.path),
        sessions,
        [e for e in parse_table(events.output()) if e.proto == "udp" and e.sport in sports],
        server,
        folder,
        value,
    )
    case.keep(inside.path, f"capture, client side (fw-in), {name}")
    case.keep(outside.path, f"capture, server side (fw-out), {name}")
    case.keep(events.path, f"session events, {name}")
    case.keep(sessions.save(folder / "sessions.json"), f"session table over time, {name}")
    (folder / "flows.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    case.keep(folder / "flows.json", f"flow results, {name}")
    return run
