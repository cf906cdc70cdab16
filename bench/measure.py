"""Pure helpers of the benchmarks: reading ping and iperf3 output, and the statistics the
tables quote. No lab here, so they are unit-tested (tests/test_bench.py)."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_REPLY = re.compile(r"icmp_seq=(\d+) .*?time=([\d.]+) ms(.*)$")


@dataclass(frozen=True)
class Reply:
    """One echo reply as ping printed it, in arrival order."""

    seq: int
    rtt: float  # ms
    duplicate: bool


def ping_replies(output: str) -> list[Reply]:
    """Every reply line of `ping -n` output, in the order they arrived."""
    replies = []
    for line in output.splitlines():
        match = _REPLY.search(line)
        if match:
            replies.append(Reply(int(match[1]), float(match[2]), "DUP!" in match[3]))
    return replies


def ping_sent(output: str) -> int:
    """How many requests ping says it sent."""
    match = re.search(r"^(\d+) packets transmitted", output, re.MULTILINE)
    if match is None:
        raise ValueError("no ping statistics in the output")
    return int(match[1])


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p1, p99, mean and standard deviation, rounded to microseconds (ms values)."""
    return {
        "samples": len(values),
        "median": round(statistics.median(values), 3),
        "p1": round(percentile(values, 0.01), 3),
        "p99": round(percentile(values, 0.99), 3),
        "mean": round(statistics.fmean(values), 3),
        "stdev": round(statistics.pstdev(values), 3),
    }


def lost_share(replies: Sequence[Reply], sent: int) -> float:
    """Percent of the `sent` requests that drew no reply."""
    answered = {r.seq for r in replies if not r.duplicate}
    return 100 * (sent - len(answered)) / sent


def duplicate_share(replies: Sequence[Reply], sent: int) -> float:
    return 100 * sum(r.duplicate for r in replies) / sent


def prompt_share(replies: Sequence[Reply], below: float) -> float:
    """Percent of replies whose RTT is under `below` ms: with a delay configured, the
    requests the element sent at once (reordered ahead of the delayed ones)."""
    return 100 * sum(r.rtt < below for r in replies) / len(replies) if replies else 0.0


def late_share(seqs: Sequence[int]) -> float:
    """Percent of arrivals with a sequence number below one already seen (RFC 4737's
    reordered packets: the ones that were overtaken)."""
    late, highest = 0, -1
    for seq in seqs:
        if seq < highest:
            late += 1
        highest = max(highest, seq)
    return 100 * late / len(seqs) if seqs else 0.0


def iperf_tcp(report: dict[str, Any]) -> float:
    """Received throughput (Gbit/s) of an `iperf3 -J` TCP run."""
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def iperf_udp(report: dict[str, Any]) -> dict[str, float]:
    """Sent and delivered packets per second and the loss of an `iperf3 -J -u` run, as
    the receiver counted them."""
    end = report["end"]
    received = end.get("sum_received") or end["sum"]
    seconds = float(received["seconds"]) or 1.0
    packets = int(received["packets"])
    lost = int(received["lost_packets"])
    return {
        "sent_pps": round(packets / seconds),
        "delivered_pps": round((packets - lost) / seconds),
        "lost_percent": round(100 * lost / packets, 3) if packets else 100.0,
    }
