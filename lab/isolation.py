"""Case isolation: each case owns a block of TCP ports, and its evidence may show no flow
outside that block.

Every client a case starts binds its source ports inside the case's block (servers may
listen on fixed service ports: the client's end names the case). After the case, every
capture and session-event log in its folder is read; a TCP flow with neither port in the
block belongs to another case (a late retransmission, a session that outlived its case)
and fails the case, named.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lab import conntrack
from lab.packets import read_tcp_pcap

BLOCK = 500  # ports per case
FIRST, LAST = 10000, 32000  # below Linux's ephemeral range (32768-60999)


class PortBlocks:
    """Hands out consecutive port blocks, wrapping round after LAST (long-gone cases)."""

    def __init__(self, first: int = FIRST, last: int = LAST, size: int = BLOCK):
        self.first, self.last, self.size = first, last, size
        self.next = first

    def take(self, size: int | None = None) -> range:
        """The next block: `size` ports (default: the usual block)."""
        size = size or self.size
        if self.next + size > self.last:
            self.next = self.first
        block = range(self.next, self.next + size)
        self.next += size
        return block


def _flows_in(path: Path) -> Iterator[tuple[str, int, str, int]]:
    if path.suffix == ".pcap":
        for seg in read_tcp_pcap(path):
            yield seg.src, seg.sport, seg.dst, seg.dport
    elif path.suffix == ".log":
        for line in path.read_text(errors="replace").splitlines():
            if "[NEW]" in line or "[UPDATE]" in line or "[DESTROY]" in line:
                s = conntrack.parse_line(line)
                if s is not None and s.proto == "tcp" and s.sport is not None and s.dport is not None:
                    yield s.src, s.sport, s.dst, s.dport


def foreign_flows(folder: Path, ports: range) -> dict[str, list[str]]:
    """Evidence file -> the TCP flows in it that are not the case's (neither port in `ports`)."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".pcap", ".log") or not path.is_file():
            continue
        alien = {
            f"{src}:{sport} > {dst}:{dport}"
            for src, sport, dst, dport in _flows_in(path)
            if sport not in ports and dport not in ports
        }
        if alien:
            found[str(path.relative_to(folder))] = sorted(alien)
    return found
