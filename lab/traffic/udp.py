"""UDP lifetime probes (`udp_probe`) against the UDP echo server (`udp_server`): how long a
session device lets a server's answer in after the client's last datagram, for a flow
refreshed only from inside (`outbound`) and for one with traffic both ways
(`bidirectional`); Linux conntrack gives them different timeouts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lab.errors import ConfigError, LabError
from lab.events import proc_events, read_records
from lab.traffic.load import app_argv, field_options, listening

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

UDP_MODES = ("outbound", "bidirectional")


@dataclass(frozen=True)
class UdpProbe:
    """One UDP lifetime probe: the server's port, the idle time before its `pushed`, the
    mode (outbound / bidirectional), and how long past the idle time the client waits.

    `sport`: the client's source port (0: the kernel picks); `warmup`, `interval`: the
    bidirectional mode's echo exchange (over 2 s: Linux counts the flow as a stream)."""

    app: ClassVar[str] = "udp_probe"
    port: int
    idle: float
    mode: str
    app_timeout: float = 2.0
    sport: int = 0
    label: str = ""
    warmup: float = 2.5
    interval: float = 0.5

    def argv(self, server: str) -> list[str]:
        options = ["port", "sport", "idle", "mode", "app_timeout"]
        if self.mode == "bidirectional":
            options += ["warmup", "interval"]
        return app_argv(self.app, "--server", server, *field_options(self, *options))

    def budget(self) -> float:
        """Seconds the probe may take at most: its warm-up, idle time, wait and a margin."""
        warmup = self.warmup if self.mode == "bidirectional" else 0.0
        return warmup + self.idle + self.app_timeout + 10

    def problems(self) -> list[str]:
        """What is wrong with this probe's settings (empty: nothing)."""
        found = []
        if self.mode not in UDP_MODES:
            found.append(f"UDP probe mode {self.mode!r}: not one of {', '.join(UDP_MODES)}")
        if self.idle < 0 or self.app_timeout < 0:
            found.append(f"UDP probe idle {self.idle:g} s, app timeout {self.app_timeout:g} s: not below 0")
        if self.mode == "bidirectional" and (self.warmup <= 0 or self.interval <= 0):
            found.append(f"UDP probe warm-up {self.warmup:g} s every {self.interval:g} s: both above 0")
        return found


@dataclass
class UdpProbeResult:
    """What the client of a UDP probe experienced."""

    probe: UdpProbe
    outcome: str  # delivered / lost / no-path
    learned_after: float  # seconds from the client's last datagram until it knew
    client: str  # address:port of the client socket
    sport: int
    wall_start: float  # wall-clock time of the client's last datagram
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, probe: UdpProbe, output: str) -> UdpProbeResult:
        """The result `probe` printed (its last record); a LabError if it printed none."""
        try:
            raw = read_records(output)[-1]
            sport = int(raw["client"].rsplit(":", 1)[1])
            fields = {name: raw[name] for name in ("outcome", "learned_after", "client", "wall_start")}
        except (ValueError, IndexError, KeyError):
            raise LabError(f"UDP probe {probe} printed no result: {output.strip()[-300:]}") from None
        return cls(probe, sport=sport, raw=raw, **fields)

    def to_dict(self) -> dict[str, Any]:
        """The probe's settings and its result, flat (`sport`: the port actually used)."""
        return {**asdict(self.probe), **{k: v for k, v in asdict(self).items() if k != "probe"}}


def udp_probe_problems(probes: list[UdpProbe]) -> list[str]:
    """Every problem of a set of probes run at once: each one's, and shared source ports."""
    sports = [p.sport for p in probes if p.sport]
    twice = sorted({p for p in sports if sports.count(p) > 1})
    return [problem for p in probes for problem in p.problems()] + [
        f"probes share source port {p}" for p in twice
    ]


def run_udp_probes(lab: Lab, client: str, server: str, probes: list[UdpProbe]) -> list[UdpProbeResult]:
    """Run UDP probes from `client` to the address `server`, all at once; results in order."""
    problems = udp_probe_problems(probes)
    if problems:
        raise ConfigError(problems)

    def one(probe: UdpProbe) -> UdpProbeResult:
        return UdpProbeResult.read(probe, lab.run(client, probe.argv(server), timeout=probe.budget()))

    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        return list(pool.map(one, probes))


def start_udp_server(lab: Lab, node: str, ports: list[int], name: str) -> Proc:
    """A UDP echo server on `ports` (0: the kernel picks; `listening_ports` reads them),
    up when it has logged listening on every one."""
    argv = app_argv("udp_server")
    for port in ports:
        argv += ["--port", str(port)]
    return lab.start(node, argv, name, ready=listening(len(ports)))


def udp_datagrams(proc: Proc, peer: str | None = None) -> list[dict[str, Any]]:
    """The datagrams the UDP server logged (`recv`: in, with the address it was sent to;
    `send`: out), optionally only those of one client address:port as the server saw it."""
    return [e for e in proc_events(proc, peer=peer) if e["event"] in ("recv", "send")]
