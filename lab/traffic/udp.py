"""UDP lifetime probes (`udp_probe`) against the UDP echo server (`udp_server`): how long a
session device lets a server's answer in after the client's last datagram, for a flow
refreshed only from inside (`outbound`) and for one with traffic both ways
(`bidirectional`); Linux conntrack gives them different timeouts.

UDP flows (`udp_flow`, S1): a flow refreshed in a chosen way (never answered, answered
once, both ways), idle, then the server's push; with application keepalives, and a
datagram from the client after idle (NAT rebinding). `capture_datagrams` reads the UDP
datagrams of a capture."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lab.errors import ConfigError, LabError
from lab.events import proc_events, read_records
from lab.traffic.load import app_argv, field_options, listening, run_batch

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

UDP_MODES = ("outbound", "bidirectional")
UDP_REFRESHES = ("none", "inside", "replied-once", "both")  # udp_flow's --refresh


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


@dataclass(frozen=True)
class UdpFlow:
    """One UDP flow (`udp_flow`): refreshed for `warmup` s as `refresh` says (none, inside:
    never answered, replied-once: answered once then from inside only, both: both ways),
    then the push answered `idle` s later; meanwhile a keepalive every `keepalive` s (0:
    none) and one `echo again` `resend_after` s after the push (0: none)."""

    app: ClassVar[str] = "udp_flow"
    port: int
    idle: float
    refresh: str
    app_timeout: float = 1.0
    sport: int = 0
    label: str = ""
    warmup: float = 2.5
    interval: float = 0.5
    keepalive: float = 0.0
    resend_after: float = 0.0

    def argv(self, server: str) -> list[str]:
        options = ["port", "sport", "idle", "refresh", "app_timeout", "warmup", "interval"]
        options += ["keepalive"] if self.keepalive else []
        options += ["resend_after"] if self.resend_after else []
        return app_argv(self.app, "--server", server, *field_options(self, *options))

    def budget(self) -> float:
        """Seconds the flow may take at most: its refresh, idle time, wait and a margin."""
        return self.warmup + self.idle + self.app_timeout + 10

    def problems(self) -> list[str]:
        """What is wrong with this flow's settings (empty: nothing)."""
        found = []
        if self.refresh not in UDP_REFRESHES:
            found.append(f"UDP flow refresh {self.refresh!r}: not one of {', '.join(UDP_REFRESHES)}")
        for name in ("idle", "app_timeout", "warmup", "keepalive", "resend_after"):
            if getattr(self, name) < 0:
                found.append(f"UDP flow {name} {getattr(self, name):g} s: below 0")
        if self.interval <= 0:
            found.append(f"UDP flow interval {self.interval:g} s: not above 0")
        if self.resend_after > self.idle + self.app_timeout:
            found.append(
                f"UDP flow resend after {self.resend_after:g} s: after its wait ends "
                f"({self.idle:g} + {self.app_timeout:g} s)"
            )
        return found


@dataclass
class UdpProbeResult:
    """What the client of a UDP probe experienced."""

    probe: UdpProbe | UdpFlow
    outcome: str  # delivered / lost / no-path
    learned_after: float  # seconds from the client's last datagram until it knew
    client: str  # address:port of the client socket
    sport: int
    wall_start: float  # wall-clock time of the client's last datagram
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, probe: UdpProbe | UdpFlow, output: str) -> UdpProbeResult:
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


def udp_probe_problems(probes: Sequence[UdpProbe | UdpFlow]) -> list[str]:
    """Every problem of a set of probes run at once: each one's, and shared source ports."""
    sports = [p.sport for p in probes if p.sport]
    twice = sorted({p for p in sports if sports.count(p) > 1})
    return [problem for p in probes for problem in p.problems()] + [
        f"probes share source port {p}" for p in twice
    ]


def run_udp_probes(
    lab: Lab, client: str, server: str, probes: Sequence[UdpProbe | UdpFlow]
) -> list[UdpProbeResult]:
    """Run UDP probes (or flows) from `client` to the address `server`, all at once;
    results in order."""
    problems = udp_probe_problems(probes)
    if problems:
        raise ConfigError(problems)

    outputs = run_batch(lab, client, server, probes)
    return [UdpProbeResult.read(probe, out) for probe, out in zip(probes, outputs, strict=True)]


def start_udp_server(lab: Lab, node: str, ports: list[int], name: str) -> Proc:
    """A UDP echo server on `ports` (0: the kernel picks; `listening_ports` reads them),
    up when it has logged listening on every one."""
    argv = app_argv("udp_server")
    for port in ports:
        argv += ["--port", str(port)]
    return lab.start(node, argv, name, ready=listening(len(ports)), daemon=True)


def udp_datagrams(proc: Proc, peer: str | None = None) -> list[dict[str, Any]]:
    """The datagrams the UDP server logged (`recv`: in, with the address it was sent to;
    `send`: out), optionally only those of one client address:port as the server saw it."""
    return [e for e in proc_events(proc, peer=peer) if e["event"] in ("recv", "send")]


@dataclass(frozen=True)
class Datagram:
    """One IPv4/UDP datagram of a capture: when, from and to which address:port, and its
    payload as text (the lab apps speak text)."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    data: str

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)


def datagram_of(frame: bytes, time: float = 0.0) -> Datagram | None:
    """The IPv4/UDP datagram an Ethernet frame carries (not a fragment's tail), else None."""
    import dpkt

    try:
        ip = dpkt.ethernet.Ethernet(frame).data
    except (dpkt.UnpackError, ValueError):
        return None
    if not isinstance(ip, dpkt.ip.IP) or ip.offset or not isinstance(ip.data, dpkt.udp.UDP):
        return None
    udp = ip.data
    return Datagram(
        time,
        socket.inet_ntoa(ip.src),
        udp.sport,
        socket.inet_ntoa(ip.dst),
        udp.dport,
        bytes(udp.data).decode(errors="replace"),
    )


def capture_datagrams(path: Path) -> list[Datagram]:
    """Every IPv4/UDP datagram of a classic pcap file (tcpdump -w; Ethernet), in capture
    order; other frames (ARP, ICMP, TCP, the capture's markers) are skipped. The payload is
    what the capture kept of it (its snaplen). Read by dpkt: scapy's dissectors
    (`lab.packets.read_pcap`) take seconds to import, and a UDP header needs none of them."""
    import dpkt

    if not path.exists() or path.stat().st_size < 24:  # tcpdump has not written its header yet
        return []
    with path.open("rb") as file:
        reader = dpkt.pcap.Reader(file)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise LabError(f"{path}: link type {reader.datalink()} is not Ethernet")
        return [d for stamp, frame in reader if (d := datagram_of(frame, float(stamp))) is not None]
