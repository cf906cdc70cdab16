"""Link impairments without netem: how accurate the lab's impairment element is and what
it costs (issue 7's targets).

    h1 -[element]- s1 - h2      the impaired path (h1-s1 names an impairment: 0 ms)
    h3 ----------- s1 - h4      the same path without an element: the baseline

Delay, jitter, reordering and duplication are set on one direction (h1 to s1), so each
ping's RTT minus the baseline's median RTT is that direction's delay. Loss is set on the
same direction: a lost request draws no reply. Each UDP run through the element also
counts where its lost packets went (`bench.impairment_path`: the relay, the switch port's
packet socket after it, the receiver's socket) and the relay's CPU per packet, so a missed
packets/s target (issue 24: 50,000) names the hop that bounds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mininet.topo import Topo

from bench import impairment_path as hops
from bench.measure import (
    Reply,
    duplicate_share,
    iperf_tcp,
    iperf_udp,
    late_share,
    lost_share,
    ping_replies,
    ping_sent,
    prompt_share,
    summary,
)
from lab.host_pairs import add_host_pairs

DELAYS_MS = (1, 10, 50, 200)
LOSSES = (1, 5, 20)
JITTER = (20, 5)  # delay, jitter (ms)
REORDER = (10, 10)  # percent, with this delay (ms): reordered frames leave at once
DUPLICATE = 5
RTT_SAMPLES = 1000
LOSS_SAMPLES = 10_000
OFFERED_PPS = (20_000, 40_000, 50_000, 60_000, 80_000, 100_000)
UDP_PAYLOAD = 64  # bytes
SECONDS = 5  # each iperf3 run
TARGET_PPS = 50_000  # issue 24
IPERF_PORT = 5201


class BenchTopo(Topo):
    """Two host pairs on one switch: through an impairable link, and through plain links."""

    def build(self):
        add_host_pairs(self, {"delay": "0ms"}, {})


class AloneTopo(Topo):
    """The element without a switch: h1 -[element]- h2, against a plain h3 - h4 (what the
    relay itself carries, apart from Open vSwitch's userspace datapath after it)."""

    def build(self):
        hosts = [self.addHost(f"h{n}", ip=f"10.0.9.{n}/24") for n in range(1, 5)]
        self.addLink(hosts[0], hosts[1], delay="0ms")
        self.addLink(hosts[2], hosts[3])


def start_servers(lab: Any) -> None:
    for server in ("h2", "h4"):
        lab.start(
            server,
            ["iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush"],
            f"iperf3-{server}",
            ready="Server listening",
        )


def udp_sweep(lab: Any) -> dict[str, list[dict[str, float]]]:
    """Each offered rate over the plain path and through the element (h1 to h2), with
    where the element path's lost packets went (`bench.impairment_path`)."""
    udp: dict[str, list[dict[str, float]]] = {"plain": [], "element": []}
    for pps in OFFERED_PPS:
        bits = pps * UDP_PAYLOAD * 8
        for path, (src, dst) in (("plain", ("h3", "h4")), ("element", ("h1", "h2"))):
            before = hops.read(lab, dst) if path == "element" else None
            result = iperf_udp(iperf(lab, src, dst, "-u", "-l", str(UDP_PAYLOAD), "-b", str(bits)))
            if before is not None:
                result.update(hops.read(lab, dst).since(before))
            udp[path].append({"offered_pps": pps, **result})
    return udp


def udp_rows(row: Callable[..., None], udp: dict[str, list[dict[str, float]]], where: str) -> None:
    """The sweep's rows: delivered and lost per rate, where the losses went, the best rate
    with < 1 % loss against the target. `where`: "the switch" or "no switch"."""
    switched = where == "the switch"
    for mine, theirs in zip(udp["element"], udp["plain"], strict=True):
        row(
            f"UDP {UDP_PAYLOAD} B at {mine['offered_pps']:,} pps offered, {where}: delivered pps, loss",
            "0 ms",
            f"{mine['delivered_pps']:,.0f}, {mine['lost_percent']:.2f} % "
            f"(plain {theirs['delivered_pps']:,.0f}, {theirs['lost_percent']:.2f} %)",
        )
    for mine in udp["element"]:
        hops_lost = f"{mine['arrived'] - mine['left']:,.0f} / "
        hops_lost += f"{mine['switch_dropped']:,.0f} / " if switched else ""
        row(
            f"UDP {UDP_PAYLOAD} B at {mine['offered_pps']:,} pps, {where}: packets lost in the relay / "
            + ("the switch port's socket / " if switched else "")
            + "the receiver's socket, relay CPU per packet",
            "0 ms",
            f"{hops_lost}{mine['receiver_dropped']:,.0f} of {mine['arrived']:,.0f}, "
            f"{1e6 * mine['relay_cpu'] / max(1.0, mine['arrived']):.1f} us",
        )
    clean = [u["delivered_pps"] for u in udp["element"] if u["lost_percent"] < 1]
    plain = [u["delivered_pps"] for u in udp["plain"] if u["lost_percent"] < 1]
    best = max(clean, default=0)
    row(
        f"packets/s through the element with < 1 % loss, {where}",
        "0 ms",
        f"{best:,.0f} (plain {max(plain, default=0):,.0f})",
        f">= {TARGET_PPS:,}",
        best >= TARGET_PPS,
    )


def ping(
    lab: Any, src: str, dst: str, count: int, interval: float, preload: int = 1
) -> tuple[list[Reply], int]:
    """The replies of `count` pings (in arrival order) and how many were sent. `preload`
    lets that many be in flight at once: ping otherwise slows down to about one per RTT."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", "-l", str(preload), lab.ip(dst)]
    out = lab.run(src, argv, timeout=count * max(interval, 0.002) + 60, check=False)
    return ping_replies(out), ping_sent(out)


def delay_target(configured: float) -> float:
    """The tolerance on a median delay: 0.5 ms + 2 % of the configured value."""
    return 0.5 + 0.02 * configured


def iperf(lab: Any, src: str, dst: str, *extra: str) -> dict[str, Any]:
    argv = ["iperf3", "-c", lab.ip(dst), "-p", str(IPERF_PORT), "-t", str(SECONDS), "-J", *extra]
    return dict(json.loads(lab.run(src, argv, timeout=SECONDS + 30)))


def run(out: Path) -> dict[str, Any]:
    """Every measurement, as data: rows for the table, and the raw samples."""
    from lab.net import Lab

    data: dict[str, Any] = {"rows": [], "samples": {}}
    rows = data["rows"]

    def row(what: str, configured: str, measured: str, target: str = "", met: bool | None = None) -> None:
        rows.append(
            {"what": what, "configured": configured, "measured": measured, "target": target, "met": met}
        )

    with Lab(BenchTopo(), out / "lab") as lab:
        start_servers(lab)
        plain = [r.rtt for r in ping(lab, "h3", "h4", RTT_SAMPLES, 0.002)[0]]
        through = [r.rtt for r in ping(lab, "h1", "h2", RTT_SAMPLES, 0.002)[0]]
        base = summary(plain)["median"]
        data["samples"]["plain"], data["samples"]["element, 0 ms"] = plain, through
        row("RTT, plain link: median / p99 (ms)", "-", _median_p99(plain))
        row("RTT through the element, no delay: median / p99 (ms)", "0 ms", _median_p99(through))
        for delay in DELAYS_MS:
            lab.impair("h1", "s1", one_way=True, delay=f"{delay}ms")
            added = [r.rtt - base for r in ping(lab, "h1", "h2", RTT_SAMPLES, 0.005, preload=64)[0]]
            data["samples"][f"delay {delay} ms"] = added
            median = summary(added)["median"]
            row(
                f"delay {delay} ms: RTT - plain RTT, median / p99 (ms)",
                f"{delay} ms",
                _median_p99(added),
                f"median within {delay_target(delay):.2f} ms",
                abs(median - delay) <= delay_target(delay),
            )
        delay, jitter = JITTER
        lab.impair("h1", "s1", one_way=True, delay=f"{delay}ms", jitter=f"{jitter}ms")
        replies, _ = ping(lab, "h1", "h2", RTT_SAMPLES, 0.005, preload=16)
        added = [r.rtt - base for r in replies]
        data["samples"][f"delay {delay} ms jitter {jitter} ms"] = added
        stats = summary(added)
        uniform_sd = jitter / 3**0.5
        row(
            f"jitter {jitter} ms on {delay} ms: p1 / median / p99, stdev (ms)",
            f"uniform {delay - jitter}-{delay + jitter} ms, stdev {uniform_sd:.2f}",
            f"{stats['p1']:.2f} / {stats['median']:.2f} / {stats['p99']:.2f}, {stats['stdev']:.2f}",
            f"p1 >= {delay - jitter - 0.5:g}, p99 <= {delay + jitter + delay_target(delay):g}",
            stats["p1"] >= delay - jitter - 0.5 and stats["p99"] <= delay + jitter + delay_target(delay),
        )
        for loss in LOSSES:
            lab.impair("h1", "s1", one_way=True, delay="0ms", jitter="0ms", loss=loss)
            replies, sent = ping(lab, "h1", "h2", LOSS_SAMPLES, 0.001)
            lost = lost_share(replies, sent)
            row(
                f"loss {loss} % over {LOSS_SAMPLES:,} packets (%)",
                f"{loss} %",
                f"{lost:.2f}",
                "within 1.5 points",
                abs(lost - loss) <= 1.5,
            )
        share, delay = REORDER
        lab.impair("h1", "s1", one_way=True, loss=0, delay=f"{delay}ms", reorder=share)
        replies, _ = ping(lab, "h1", "h2", 2 * RTT_SAMPLES, 0.001, preload=32)
        replies = [r for r in replies if not r.duplicate]
        ahead = prompt_share(replies, delay / 2)
        row(
            f"reorder {share} % (delay {delay} ms): sent at once / arrived after a later one (%)",
            f"{share} %",
            f"{ahead:.1f} / {late_share([r.seq for r in replies]):.1f}",
            "sent at once within 1.5 points",
            abs(ahead - share) <= 1.5,
        )
        lab.impair("h1", "s1", one_way=True, delay="0ms", reorder=0, duplicate=DUPLICATE)
        replies, sent = ping(lab, "h1", "h2", 2 * RTT_SAMPLES, 0.001)
        dup = duplicate_share(replies, sent)
        row(
            f"duplicate {DUPLICATE} % (%)",
            f"{DUPLICATE} %",
            f"{dup:.2f}",
            "within 1.5 points",
            abs(dup - DUPLICATE) <= 1.5,
        )
        lab.impair("h1", "s1", duplicate=0)
        tcp = {"plain": iperf_tcp(iperf(lab, "h3", "h4")), "element": iperf_tcp(iperf(lab, "h1", "h2"))}
        data["tcp"] = tcp
        row(
            "TCP throughput, iperf3 (Gbit/s)",
            "0 ms",
            f"{tcp['element']:.2f} (plain link {tcp['plain']:.2f})",
            "",
            None,
        )
        data["udp"] = udp_sweep(lab)
        udp_rows(row, data["udp"], "the switch")
        relay_log = next(p.log_path for p in lab.supervisor.procs if p.name.startswith("impair-"))
    data["relay"] = relay_stats(relay_log)  # written as the lab stopped it
    row(
        "relay: the most a due frame waited for it / its timer margin (ms)",
        "-",
        f"{data['relay'].get('late_max_ms', '?')} / {data['relay'].get('early_ms', '?')}",
    )
    with Lab(AloneTopo(), out / "alone") as lab:
        start_servers(lab)
        data["udp alone"] = udp_sweep(lab)
        udp_rows(row, data["udp alone"], "no switch")
    return data


def relay_stats(log: Path) -> dict[str, Any]:
    """The relay's closing stats event (empty if it printed none)."""
    events = [json.loads(line) for line in log.read_text().splitlines() if '"event": "stats"' in line]
    return dict(events[-1]) if events else {}


def _median_p99(values: list[float]) -> str:
    stats = summary(values)
    return f"{stats['median']:.3f} / {stats['p99']:.3f}"


def plot(data: dict[str, Any], path: Path) -> Path:
    """Three panels: each delay's added-RTT distribution against the configured value;
    the jitter's distribution; delivered packets/s against offered, with and without."""
    from lab.plot import plt, save

    fig, (delays, jitter, pps) = plt.subplots(1, 3, figsize=(15, 4.2))
    for delay in DELAYS_MS:
        values = sorted(v - delay for v in data["samples"][f"delay {delay} ms"])
        shares = [i / len(values) for i in range(1, len(values) + 1)]
        delays.plot(values, shares, label=f"{delay} ms")
    delays.axvline(0, color="grey", linestyle="--", linewidth=1)
    delays.set_xlabel("measured delay - configured (ms)")
    delays.set_ylabel("share of pings")
    delays.set_title(f"delay error, {RTT_SAMPLES} pings each")
    delays.legend(title="configured", fontsize=8)
    delay, spread = JITTER
    jitter.hist(data["samples"][f"delay {delay} ms jitter {spread} ms"], bins=40, color="tab:blue")
    for edge in (delay - spread, delay + spread):
        jitter.axvline(edge, color="grey", linestyle="--", linewidth=1)
    jitter.set_xlabel("measured delay (ms)")
    jitter.set_ylabel("pings")
    jitter.set_title(f"delay {delay} ms, jitter {spread} ms (uniform)")
    for sweep, path_name, style, label in (
        ("udp", "plain", "o--", "plain, through the switch"),
        ("udp", "element", "s-", "element, through the switch"),
        ("udp alone", "plain", "^:", "plain, no switch"),
        ("udp alone", "element", "D-", "element, no switch"),
    ):
        series = data[sweep][path_name]
        pps.plot([u["offered_pps"] for u in series], [u["delivered_pps"] for u in series], style, label=label)
    top = max(OFFERED_PPS)
    pps.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="offered")
    pps.axhline(TARGET_PPS, color="tab:red", linestyle="--", linewidth=1, label=f"target {TARGET_PPS:,}")
    pps.set_xlabel(f"offered UDP packets/s ({UDP_PAYLOAD} B)")
    pps.set_ylabel("delivered packets/s")
    pps.set_title("forwarding cost: element against a plain link, with and without the switch")
    pps.legend(fontsize=8)
    save(fig, path)
    return path
