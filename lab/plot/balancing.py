"""Load balancers (S4): where the requests went, requests over time, scaling with the
number of servers, several balancers compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.plot.base import plt, save


def distribution_figure(
    counts: Mapping[str, Mapping[str, int]], servers: Sequence[str], path: Path, title: str
) -> Path:
    """Requests per real server, a bar per server stacked by client (client -> server ->
    requests), with each bar's total above it."""
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0] * len(servers)
    for client, per_server in counts.items():
        heights = [per_server.get(s, 0) for s in servers]
        ax.bar(servers, heights, bottom=bottom, label=client)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, total in enumerate(bottom):
        ax.annotate(str(total), (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("requests answered (servers' logs)")
    ax.set_title(title)
    ax.legend(title="client", fontsize=8)
    return save(fig, path)


def requests_timeline(
    series: Mapping[str, Sequence[float]],
    failures: Sequence[float],
    markers: Mapping[str, float],
    path: Path,
    title: str,
    bin_s: float = 0.25,
) -> Path:
    """Requests per second over time: a line per real server (the times each answered,
    from its log), failed requests as red crosses per bin, and vertical event markers."""
    ends = [t for ts in series.values() for t in ts] + list(failures) + list(markers.values())
    span = max(ends, default=1.0) + bin_s
    bins = [i * bin_s for i in range(int(span / bin_s) + 1)]

    def rate(times: Sequence[float]) -> list[float]:
        counts = [0] * len(bins)
        for t in times:
            counts[min(int(t / bin_s), len(bins) - 1)] += 1
        return [c / bin_s for c in counts]

    fig, ax = plt.subplots(figsize=(10, 4))
    styles = ("o", "s", "^", "v", "D", "P")
    for i, (name, times) in enumerate(series.items()):
        ax.plot(bins, rate(times), marker=styles[i % len(styles)], markersize=3, linewidth=1, label=name)
    if failures:
        failed = rate(failures)
        xs = [x for x, r in zip(bins, failed, strict=True) if r]
        ax.scatter(xs, [r for r in failed if r], marker="x", color="red", s=30, label="failed", zorder=5)
    for i, (label, t) in enumerate(markers.items()):
        ax.axvline(t, color="grey", linestyle=("--", ":", "-.")[i % 3], linewidth=1)
        ax.annotate(label, (t, ax.get_ylim()[1]), rotation=90, fontsize=7, va="top", ha="right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests/s")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    return save(fig, path)


def scaling_figure(rates: Mapping[int, float], extra: Mapping[str, float], path: Path, title: str) -> Path:
    """Requests/s against the number of real servers (measured, and the ideal: n times
    one server), with other configurations as labelled points."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ns = sorted(rates)
    ax.plot(ns, [rates[n] for n in ns], marker="o", label="measured")
    ax.plot(ns, [rates[ns[0]] * n / ns[0] for n in ns], linestyle="--", color="grey", label="n x one server")
    for i, (label, value) in enumerate(extra.items()):
        ax.scatter([2], [value], marker=("s", "^", "D")[i % 3], s=60, zorder=5, label=label)
    for n in ns:
        ax.annotate(f"{rates[n]:.0f}", (n, rates[n]), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xticks(ns)
    ax.set_xlabel("real servers")
    ax.set_ylabel("requests/s (wrk)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, path)


def comparison_figure(
    counts: Mapping[str, Mapping[str, int]], rates: Mapping[str, float], path: Path, title: str
) -> Path:
    """The same traffic through several balancers: requests per server, a group of bars
    per balancer (balancer -> server -> requests), and each balancer's requests/s."""
    fig, (bars, speed) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    kinds = list(counts)
    servers = sorted({s for per in counts.values() for s in per})
    width = 0.8 / max(1, len(servers))
    for i, server in enumerate(servers):
        xs = [k + (i - (len(servers) - 1) / 2) * width for k in range(len(kinds))]
        bars.bar(xs, [counts[kind].get(server, 0) for kind in kinds], width, label=server)
    bars.set_xticks(range(len(kinds)), kinds, fontsize=8)
    bars.set_ylabel("requests answered (servers' logs)")
    bars.legend(title="server", fontsize=8)
    bars.set_title("where the sessions went")
    speed.barh(kinds, [rates[k] for k in kinds], color="tab:gray")
    for y, kind in enumerate(kinds):
        speed.annotate(f"{rates[kind]:,.0f}", (rates[kind], y), va="center", fontsize=8)
    speed.invert_yaxis()
    speed.set_xlabel("requests/s (wrk, kept-open connections)")
    speed.set_title("throughput")
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
