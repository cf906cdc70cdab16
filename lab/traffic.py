"""Real traffic between lab hosts: idle probes, echo servers, hand-made segments."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.net import Lab, Proc


@dataclass(frozen=True)
class IdleProbe:
    """One idle probe to run: which service, how long idle, and how it keeps alive."""

    port: int
    idle: float
    app_timeout: float = 3.0
    tcp_keepalive: int = 0  # TCP keepalive period (s); 0: off
    heartbeat: float = 0.0  # application heartbeat period (s); 0: off
    label: str = ""

    def argv(self, server: str) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "lab.apps.tcp_probe",
            "--server",
            server,
            "--port",
            str(self.port),
            "--idle",
            str(self.idle),
            "--app-timeout",
            str(self.app_timeout),
        ]
        if self.tcp_keepalive:
            argv += ["--tcp-keepalive", str(self.tcp_keepalive)]
        if self.heartbeat:
            argv += ["--heartbeat", str(self.heartbeat)]
        return argv


@dataclass
class ProbeResult:
    """What the application behind a probe experienced."""

    probe: IdleProbe
    outcome: str  # delivered / hung / reset
    learned_after: float  # seconds from the start of idle until the application knew
    client: str  # address:port of the client socket
    sport: int
    wall_start: float
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.probe), **{k: v for k, v in asdict(self).items() if k != "probe"}}


def run_probes(lab: Lab, client: str, server: str, probes: list[IdleProbe]) -> list[ProbeResult]:
    """Run probes from `client` to the address `server`, all at once; results in order."""

    def one(probe: IdleProbe) -> ProbeResult:
        budget = probe.idle + 2 * probe.app_timeout + 10
        out = lab.run(client, probe.argv(server), timeout=budget)
        try:
            raw = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError(f"probe {probe} printed no result: {out.strip()[-300:]}") from None
        return ProbeResult(
            probe,
            raw["outcome"],
            raw["learned_after"],
            raw["client"],
            int(raw["client"].rsplit(":", 1)[1]),
            raw["wall_start"],
            raw,
        )

    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        return list(pool.map(one, probes))


def start_echo_server(lab: Lab, node: str, ports: list[int], name: str) -> Proc:
    """A line echo server on `ports`, up when it has logged listening on every one."""
    argv = [sys.executable, "-m", "lab.apps.echo_server"]
    for port in ports:
        argv += ["--port", str(port)]
    proc = lab.start(node, argv, name)
    for port in ports:
        proc.wait_for_output(rf'"listening", "t": [\d.]+, "port": {port}\b', 10)
    return proc


def server_events(proc: Proc, peer: str | None = None) -> list[dict[str, Any]]:
    """The echo server's logged events, optionally only those of one client address:port."""
    events = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    return [e for e in events if peer is None or e.get("peer") == peer]


def send_segment(lab: Lab, node: str, src: str, dst: str, sport: int, dport: int, flags: str = "A") -> None:
    """Send one hand-made TCP segment from `node` (an out-of-state ACK, say)."""
    lab.run(
        node,
        [
            sys.executable,
            "-m",
            "lab.apps.craft",
            "--src",
            src,
            "--dst",
            dst,
            "--sport",
            str(sport),
            "--dport",
            str(dport),
            "--flags",
            flags,
        ],
    )


def run_sessions(
    lab: Lab,
    client: str,
    servers: list[str],
    count: int,
    concurrency: int = 8,
    timeout: float = 2.0,
    first_port: int = 0,
) -> list[dict[str, Any]]:
    """`count` short TCP sessions from `client` to `servers` (address:port, round robin);
    with `first_port`, session i uses source port first_port + i."""
    argv = [
        sys.executable,
        "-m",
        "lab.apps.tcp_sessions",
        "--count",
        str(count),
        "--concurrency",
        str(concurrency),
        "--timeout",
        str(timeout),
        "--first-port",
        str(first_port),
    ]
    for server in servers:
        argv += ["--server", server]
    budget = count * (timeout + 1) / max(1, concurrency) + 30
    out = lab.run(client, argv, timeout=budget)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run_sessions_from(
    lab: Lab, clients: list[str], servers: list[str], count: int, **options: Any
) -> list[dict[str, Any]]:
    """`count` sessions in all, spread over `clients` that run at once; each record names its client."""
    share = [count // len(clients) + (1 if i < count % len(clients) else 0) for i in range(len(clients))]

    def one(item: tuple[str, int]) -> list[dict[str, Any]]:
        client, n = item
        return [{**r, "client": lab.ip(client)} for r in run_sessions(lab, client, servers, n, **options)]

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return [r for part in pool.map(one, zip(clients, share, strict=True)) for r in part]
