"""Hostile traffic (issue 26, point 5): malformed and random frames from scapy's `fuzz()`,
deterministic from a seed, kept as a pcap, and sent from a lab host at a bounded rate.

The mix, in equal shares: Ethernet with a random type and payload; IPv4 and IPv6 with every
header field random but the addresses; TCP and UDP with random headers over plain IP; MPLS
with random labels over IP/TCP; VXLAN with a random header around an inner Ethernet/IP/TCP;
and whole Ether/IP(v6)/TCP|UDP frames cut at a random length, shorter than their headers
claim. Every address is the aim's: destination MACs the device's own (some broadcast, some
random, never one of `avoid_macs`: the root namespace's), IP addresses inside the lab's
ranges, TCP source ports in the case's block. A frame that the harness's own readers
(`lab.packets`, `lab.addresses`, as the isolation and outside checks read captures) would
read with an address outside the ranges, or as a TCP flow outside the block, is drawn
again: the frames and their captures stay the lab's and the case's.

`python -m lab.fuzz --pcap F --iface I --rate R` is the sender: each frame of F written as
it is to a packet socket on I (what scapy's `sendp` does; no tcpreplay here), R a second at
most, one JSON line with what it sent at the end.
"""

from __future__ import annotations

import argparse
import errno
import functools
import ipaddress
import json
import logging
import os
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("ether", "ipv4", "ipv6", "tcp", "udp", "mpls", "vxlan", "truncated")
BROADCAST = "ff:ff:ff:ff:ff:ff"
MAX_FRAME = 1514  # bytes: a frame the lab's 1500-byte links carry
MIN_FRAME = 14  # bytes: a packet socket sends nothing shorter than the Ethernet header
MAX_RATE = 20_000  # frames/s: the sender's bound
VXLAN_PORT = 4789
MAX_DRAWS = 50  # rounds of drawing again the frames the checks reject


@functools.lru_cache(maxsize=256)
def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or network, parsed once (the aim's are drawn from for every frame)."""
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True)
class Aim:
    """Where the frames go. `macs`: destination MACs (the device's); `targets`:
    destination addresses of either family (the inside hosts, VIPs, the device's own);
    `sources`: source networks (the sender's side); `services`: destination ports to
    favour; `ports`: TCP/UDP source ports (the case's block); `ranges`: networks every
    address must lie in (`lab.outside.lab_ranges()`); `avoid_macs`: never a destination."""

    macs: tuple[str, ...]
    targets: tuple[str, ...]
    sources: tuple[str, ...]
    services: tuple[int, ...]
    ports: range
    ranges: tuple[str, ...]
    avoid_macs: frozenset[str] = frozenset()

    def problems(self) -> list[str]:
        """Every problem of this aim, each naming its field."""
        found = []
        nets = [ipaddress.ip_network(r) for r in self.ranges]
        if not self.macs:
            found.append("macs: none")
        found += [f"macs: {m} is to be avoided" for m in self.macs if m.lower() in self.avoid_macs]
        for name in ("targets", "sources"):
            values = getattr(self, name)
            if not values:
                found.append(f"{name}: none")
            for value in values:
                net = network(value)
                if not any(net.version == n.version and net.subnet_of(n) for n in nets):  # type: ignore[arg-type]
                    found.append(f"{name}: {value} is outside the lab's ranges")
        for family in (4, 6):
            has_target = any(network(t).version == family for t in self.targets)
            has_source = any(network(s).version == family for s in self.sources)
            if has_target != has_source:
                found.append(f"targets and sources: IPv{family} on one side only")
        if len(self.ports) < 2 or self.ports.start < 1024 or self.ports.stop > 65536:
            found.append(f"ports: {self.ports} is not a block of unprivileged ports")
        return found

    def families(self) -> tuple[int, ...]:
        return tuple(sorted({network(t).version for t in self.targets}))


@dataclass(frozen=True)
class Frame:
    """One generated frame: its place in the sequence, its kind, its bytes, and for a
    truncated one the length its headers claim."""

    index: int
    kind: str
    data: bytes
    claimed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "length": len(self.data), "claimed": self.claimed}


@dataclass
class _Draw:
    """The randomness of one generation: our choices from `rng`, scapy's fuzz from the
    module-level `random` (scapy's volatile fields use it), seeded together."""

    aim: Aim
    rng: random.Random

    def mac(self) -> str:
        roll = self.rng.random()
        if roll < 0.1:
            return BROADCAST
        if roll < 0.25:
            while True:  # a random locally administered unicast MAC, none of the avoided
                octets = [0x02 | (self.rng.randrange(256) & 0xFC)] + [
                    self.rng.randrange(256) for _ in range(5)
                ]
                mac = ":".join(f"{o:02x}" for o in octets)
                if mac not in self.aim.avoid_macs:
                    return mac
        return self.rng.choice(self.aim.macs)

    def src_mac(self) -> str:
        octets = [0x02] + [self.rng.randrange(256) for _ in range(5)]
        return ":".join(f"{o:02x}" for o in octets)

    def family(self) -> int:
        return self.rng.choice(self.aim.families())

    def target(self, family: int) -> str:
        """A target address half the time, else a random address of a target's network."""
        chosen = [t for t in self.aim.targets if network(t).version == family]
        pick = self.rng.choice(chosen)
        if self.rng.random() < 0.5:
            return str(network(pick).network_address)
        prefix = 24 if family == 4 else 64
        net = network(pick).supernet(new_prefix=prefix)
        return self._inside(net)

    def source(self, family: int) -> str:
        nets = [network(s) for s in self.aim.sources if network(s).version == family]
        return self._inside(self.rng.choice(nets))

    def _inside(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        if net.num_addresses <= 2:
            return str(net.network_address)
        span = min(net.num_addresses - 2, 2**32)
        return str(net.network_address + 1 + self.rng.randrange(span))

    def sport(self) -> int:
        return self.rng.choice(self.aim.ports)

    def dport(self) -> int:
        return self.rng.choice(self.aim.services) if self.rng.random() < 0.5 else self.rng.randrange(1, 65536)


def _layers() -> dict[str, Any]:
    """scapy's layers, imported once, quietly (its warnings bypass our logging)."""
    logging.getLogger("scapy").setLevel(logging.ERROR)
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw, fuzz

    return {"MPLS": MPLS, "IP": IP, "TCP": TCP, "UDP": UDP, "IPv6": IPv6, "Ether": Ether,
            "VXLAN": VXLAN, "Raw": Raw, "fuzz": fuzz}  # fmt: skip


def stack(*layers: Any) -> Any:
    """The layers, each the payload of the one before: scapy's `/` without its copies."""
    for layer in layers[1:]:
        layers[0].add_payload(layer)
    return layers[0]


def _build(kind: str, d: _Draw, s: dict[str, Any]) -> tuple[bytes, int]:
    """One frame of `kind`: its bytes and, for a truncated one, the length its headers
    claim (0 otherwise). Every address set here: scapy resolves an unset one by routing
    and ARP from this process's namespace, slowly and with this machine's addresses."""
    # scapy's class names, imported lazily (`_layers`): the sender needs none of them
    Ether, IP, IPv6, TCP, UDP, Raw, fuzz = (  # noqa: N806
        s[k] for k in ("Ether", "IP", "IPv6", "TCP", "UDP", "Raw", "fuzz")
    )
    family = d.family()

    def eth(**kw: Any) -> Any:
        return Ether(dst=d.mac(), src=d.src_mac(), **kw)

    def ip(**kw: Any) -> Any:
        src, dst = d.source(family), d.target(family)
        # the identification (flow label) random too where fuzz() leaves it: it tells the
        # frames apart in a capture (`Parsed.key`)
        if family == 4:
            return IP(src=src, dst=dst, id=d.rng.randrange(65536), **kw)
        return IPv6(src=src, dst=dst, fl=d.rng.randrange(2**20), **kw)

    def payload() -> Any:
        return Raw(bytes(d.rng.randrange(256) for _ in range(d.rng.randrange(0, 64))))

    def fz(layer: Any) -> Any:
        # fuzz() in place, on defaults of the layer's own (an unfuzzed layer shares its
        # class's): scapy's fuzz() without its copy of the whole packet
        layer.default_fields = layer.copy_fields_dict(layer.default_fields)
        return fuzz(layer, _inplace=1)

    if kind == "ether":
        return bytes(stack(fz(eth()), payload())), 0
    if kind == "ipv4":
        family = 4 if 4 in d.aim.families() else family
        return bytes(stack(eth(), fz(ip()), payload())), 0
    if kind == "ipv6":
        family = 6 if 6 in d.aim.families() else family
        return bytes(stack(eth(), fz(ip()), payload())), 0
    if kind == "tcp":
        return bytes(stack(eth(), ip(), fz(TCP(sport=d.sport(), dport=d.dport())), payload())), 0
    if kind == "udp":
        return bytes(stack(eth(), ip(), fz(UDP(sport=d.sport(), dport=d.dport())), payload())), 0
    if kind == "mpls":
        inner = stack(ip(), TCP(sport=d.sport(), dport=d.dport(), flags="S"))
        return bytes(stack(eth(type=0x8847), fz(s["MPLS"]()), inner)), 0
    if kind == "vxlan":
        inner_eth = Ether(dst=d.mac(), src=d.src_mac())
        inner = stack(inner_eth, ip(), TCP(sport=d.sport(), dport=d.dport(), flags="S"))
        outer = stack(eth(), ip(), UDP(sport=d.sport(), dport=VXLAN_PORT))
        return bytes(stack(outer, fz(s["VXLAN"]()), inner)), 0
    if kind == "truncated":
        l4 = (
            TCP(sport=d.sport(), dport=d.dport(), flags="S")
            if d.rng.random() < 0.5
            else UDP(sport=d.sport(), dport=d.dport())
        )
        whole = bytes(stack(eth(), ip(), l4, payload()))
        cut = d.rng.randrange(MIN_FRAME, len(whole))
        return whole[:cut], len(whole)
    raise ValueError(f"no frame kind {kind!r} (known: {', '.join(KINDS)})")


def generate(seed: int, count: int, aim: Aim) -> list[Frame]:
    """`count` frames, the kinds in equal shares in a shuffled order, the same for the same
    seed and aim. Frames the checks reject (`rejected`) are drawn again."""
    from lab.errors import ConfigError

    problems = aim.problems()
    if problems:
        raise ConfigError(f"fuzz aim: {'; '.join(problems)}")
    if count < len(KINDS):
        raise ConfigError(f"fuzz: count {count} is fewer than the {len(KINDS)} kinds")
    layers = _layers()
    saved = random.getstate()
    random.seed(seed)  # scapy's fuzz draws from the module-level generator
    try:
        draw = _Draw(aim, random.Random(seed))
        kinds = [KINDS[i % len(KINDS)] for i in range(count)]
        draw.rng.shuffle(kinds)
        frames = [_frame(i, kinds[i], draw, layers) for i in range(count)]
        bad = rejected(frames, aim)
        for _ in range(MAX_DRAWS):
            if not bad:
                return frames
            for i in sorted(bad):
                frames[i] = _frame(i, frames[i].kind, draw, layers)
            bad = rejected([frames[i] for i in sorted(bad)], aim)  # each frame read alone
        raise ConfigError(f"fuzz: {len(bad)} frames still rejected after {MAX_DRAWS} draws")
    finally:
        random.setstate(saved)


def _frame(index: int, kind: str, draw: _Draw, layers: dict[str, Any]) -> Frame:
    """A frame of `kind` that scapy builds and a packet socket sends (14-1514 bytes)."""
    while True:
        try:
            data, claimed = _build(kind, draw, layers)
        except Exception:  # noqa: BLE001 - a field value scapy cannot build: draw again
            continue
        if MIN_FRAME <= len(data) <= MAX_FRAME:
            return Frame(index, kind, data, claimed)


def rejected(frames: list[Frame], aim: Aim) -> set[int]:
    """Indexes of frames the harness's capture readers would read with an address outside
    `aim.ranges` (`lab.addresses`) or as a TCP flow with neither port in `aim.ports`
    (`lab.packets`), read as the isolation and outside checks read a capture: each
    frame's timestamp in the file is its index."""
    from lab.addresses import read_addressed_pcap
    from lab.outside import within
    from lab.packets import read_tcp_pcap

    nets = [ipaddress.ip_network(r) for r in aim.ranges]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "check.pcap"
        write_pcap(path, frames)
        bad = {
            frames[int(round(p.time))].index
            for p in read_addressed_pcap(path)
            if not (within(p.src, nets) and within(p.dst, nets))
        }
        bad |= {
            frames[int(round(s.time))].index
            for s in read_tcp_pcap(path)
            if s.sport not in aim.ports and s.dport not in aim.ports
        }
    return bad


def write_pcap(path: Path, frames: Iterable[Frame]) -> Path:
    """The frames as a classic Ethernet pcap, each stamped with its position in the list
    (seconds), so that a reader's timestamps name the frames."""
    from scapy.utils import RawPcapWriter

    writer = RawPcapWriter(str(path), linktype=1, sync=False)
    try:
        writer.write_header(None)  # also for no frame: a pcap with its header only
        for n, frame in enumerate(frames):
            writer.write_packet(frame.data, sec=n, usec=0)
    finally:
        writer.close()
    return path


def write_index(path: Path, frames: Iterable[Frame]) -> Path:
    """One JSON line per frame (index, kind, length, claimed): the pcap's table of contents."""
    path.write_text("".join(json.dumps(f.to_dict()) + "\n" for f in frames))
    return path


# --- the sender ---------------------------------------------------------------------------
def send(pcap: Path, iface: str, rate: float) -> dict[str, Any]:
    """Every frame of `pcap` as it is, on `iface` (a packet socket), at most `rate` a
    second; what it sent, and the errors by name (a frame the kernel refuses is counted)."""
    from lab.packets import read_pcap

    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate {rate} is not in (0, {MAX_RATE}] frames/s")
    sent, failed = 0, Counter[str]()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        started = time.monotonic()
        for n, (_stamp, frame) in enumerate(read_pcap(pcap)):
            due = started + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                sock.send(frame)
                sent += 1
            except OSError as exc:
                failed[errno.errorcode.get(exc.errno or 0, str(exc.errno))] += 1
        seconds = time.monotonic() - started
    return {"event": "sent", "sent": sent, "failed": dict(failed), "seconds": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send a pcap's frames as they are, at a bounded rate.")
    parser.add_argument("--pcap", required=True, type=Path)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="frames/s at most")
    args = parser.parse_args(argv)
    try:
        result = send(args.pcap, args.iface, args.rate)
    except (OSError, ValueError) as exc:
        print(f"lab.fuzz: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


def sender_argv(pcap: Path, iface: str, rate: float) -> list[str]:
    """The sender's command line, for a lab host."""
    return [sys.executable, "-m", "lab.fuzz", "--pcap", str(pcap), "--iface", iface, "--rate", f"{rate:g}"]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
