"""Idle probes (`tcp_probe`) against the echo server, and long transfers (`bulk`): what an
application experiences when a session outlives a device's timeout or its path moves."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lab.errors import ConfigError, LabError
from lab.events import proc_events, read_records
from lab.traffic.load import app_argv, cli_options, field_options, listening, run_batch

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc


@dataclass(frozen=True)
class IdleProbe:
    """One idle probe to run: which service, how long idle, and how it keeps alive.

    `push`: the server speaks first after the idle period (the service direction);
    `sport`: the client's source port (0: the kernel picks)."""

    app: ClassVar[str] = "tcp_probe"
    port: int
    idle: float
    app_timeout: float = 3.0
    tcp_keepalive: int = 0  # TCP keepalive period (s); 0: off
    heartbeat: float = 0.0  # application heartbeat period (s); 0: off
    label: str = ""
    sport: int = 0
    push: bool = False

    def argv(self, server: str) -> list[str]:
        argv = app_argv(
            self.app,
            "--server",
            server,
            *field_options(self, "port", "idle", "app_timeout"),
        )
        if self.sport:
            argv += ["--sport", str(self.sport)]
        if self.tcp_keepalive:
            argv += ["--tcp-keepalive", str(self.tcp_keepalive)]
        if self.heartbeat:
            argv += ["--heartbeat", str(self.heartbeat)]
        if self.push:
            argv += ["--push"]
        return argv

    def budget(self) -> float:
        """Seconds the probe may take at most: its idle period and two reply waits."""
        return self.idle + 2 * self.app_timeout + 10


@dataclass
class ProbeResult:
    """What the application behind a probe experienced. `client`: its socket's
    address:port as the echo server logs its peer (an IPv6 address unbracketed)."""

    probe: IdleProbe
    outcome: str  # delivered / hung / reset
    learned_after: float  # seconds from the start of idle until the application knew
    client: str  # address:port of the client socket
    sport: int
    wall_start: float
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The probe's settings and its result, flat (`sport`: the port actually used)."""
        return {**asdict(self.probe), **{k: v for k, v in asdict(self).items() if k != "probe"}}


def run_probes(lab: Lab, client: str, server: str, probes: list[IdleProbe]) -> list[ProbeResult]:
    """Run probes from `client` to the address `server` (IPv4 or IPv6), all at once;
    results in order."""
    try:
        ipaddress.ip_address(server)
    except ValueError:
        raise ConfigError(f"probe server {server!r} is not an IPv4 or IPv6 address") from None
    sports = [p.sport for p in probes if p.sport]
    twice = sorted({p for p in sports if sports.count(p) > 1})
    if twice:
        raise ConfigError([f"probes share source port {p}" for p in twice])

    def one(probe: IdleProbe, out: str) -> ProbeResult:
        try:
            raw = read_records(out)[-1]
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

    outputs = run_batch(lab, client, server, probes)
    return [one(probe, out) for probe, out in zip(probes, outputs, strict=True)]


def start_echo_server(lab: Lab, node: str, ports: list[int], name: str) -> Proc:
    """A line echo server on `ports`, over IPv4 and IPv6 where the node has it (it also
    answers `push <s>` with `pushed` after s seconds), up when it has logged listening on
    every one."""
    argv = app_argv("echo_server")
    for port in ports:
        argv += ["--port", str(port)]
    return lab.start(node, argv, name, ready=listening(len(ports)), daemon=True)


def server_events(proc: Proc, peer: str | None = None) -> list[dict[str, Any]]:
    """The events an app logged (the echo server's, say), optionally only those of one
    client address:port (`lab.events.proc_events` with the peer second)."""
    return proc_events(proc, peer=peer)


def listening_ports(proc: Proc) -> list[int]:
    """The ports a server app listens on, as it logged them (the kernel's pick for 0)."""
    return [e["port"] for e in proc_events(proc, "listening")]


def start_bulk_receiver(lab: Lab, node: str, port: int, name: str, interval: float = 0.1) -> Proc:
    """A bulk receiver on `port` logging the bytes of every `interval` (see `bulk_series`),
    up when it listens. On stop it aborts (RST) a transfer still open."""
    argv = app_argv("bulk", "receive", "--port", str(port), "--interval", str(interval))
    return lab.start(node, argv, name, ready=listening())


def start_bulk_sender(
    lab: Lab,
    node: str,
    server: str,
    port: int,
    name: str,
    duration: float,
    sport: int = 0,
    user_timeout: float = 3.0,
    rate: float = 2_500_000,
) -> Proc:
    """A bulk sender streaming `rate` bytes/s to `server`:`port` for `duration` s from
    source port `sport`, up when connected. A path that stops carrying it breaks it within
    `user_timeout` s (TCP_USER_TIMEOUT); its `done` event says `completed` or `broken`."""
    argv = app_argv(
        "bulk",
        "send",
        *cli_options(server=server, port=port, sport=sport, duration=duration),
        *cli_options(user_timeout=user_timeout, rate=rate),
    )
    return lab.start(node, argv, name, ready=r'"event": "connected"')


def bulk_series(proc: Proc) -> list[tuple[float, int]]:
    """The bulk receiver's throughput: (wall time, bytes received in the interval ending then)."""
    return [(e["t"], e["bytes"]) for e in proc_events(proc, "bytes")]


def bulk_outcome(proc: Proc) -> dict[str, Any] | None:
    """The bulk sender's `done` event (outcome completed / broken, bytes sent), None before."""
    done = proc_events(proc, "done")
    return done[-1] if done else None
