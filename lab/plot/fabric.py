"""Redundant firewalls and their fabric (S2): success per mode, sync lag, failover
throughput and the SYN-ACK race against the synced entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.plot.base import plt, save


def mode_figure(modes: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Success rate per fabric mode (left) and sessions per firewall, split ones marked (right)."""
    names = list(modes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    rates = [100 * modes[m]["success rate"] for m in names]
    bars = left.bar(names, rates, color=["tab:red" if r < 100 else "tab:green" for r in rates])
    left.bar_label(bars, [f"{r:.0f}%" for r in rates])
    left.set_ylim(0, 110)
    left.set_ylabel("sessions that opened and carried data (%)")
    left.set_title("success rate per mode")
    xs = range(len(names))
    per_fw = "sessions per firewall (SYN captured entering it)"
    fw1 = [modes[m][per_fw].get("fw1", 0) for m in names]
    fw2 = [modes[m][per_fw].get("fw2", 0) for m in names]
    split = [modes[m]["sessions whose directions the fabric split (controller)"] for m in names]
    right.bar([x - 0.25 for x in xs], fw1, 0.25, label="via FW1")
    right.bar(list(xs), fw2, 0.25, label="via FW2")
    right.bar([x + 0.25 for x in xs], split, 0.25, label="directions split by the fabric", color="grey")
    right.set_xticks(list(xs), names)
    right.set_ylabel("sessions")
    right.set_title("sessions per firewall (SYN captured entering it)")
    right.set_ylim(0, 1.35 * max([*fw1, *fw2, *split, 1]))
    right.legend(fontsize=8, ncols=3, loc="upper center")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=15)
    return save(fig, path)


def sync_lag_figure(lags: Sequence[float], path: Path, title: str) -> Path:
    """Distribution of the delay from a session's entry on one firewall to the peer's."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    if lags:
        ms = sorted(1000 * x for x in lags)
        ax.hist(ms, bins=30, color="tab:blue")
        ax.axvline(ms[len(ms) // 2], color="black", linestyle="--", label=f"median {ms[len(ms) // 2]:.3f} ms")
        ax.legend()
    else:
        ax.text(
            0.5,
            0.5,
            "no entry reached the peer's kernel table",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("sync lag (ms)")
    ax.set_ylabel("sessions")
    ax.set_title(title)
    return save(fig, path)


def failover_figure(
    series: Sequence[tuple[float, int]], failed_at: float, path: Path, title: str, interval: float = 0.1
) -> Path:
    """Throughput (Mbit/s) at the receiver over time, the firewall's failure marked."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if series:
        t0 = series[0][0]
        ax.plot(
            [t - t0 for t, _ in series], [8 * b / interval / 1e6 for _, b in series], drawstyle="steps-post"
        )
        ax.axvline(failed_at - t0, color="tab:red", linestyle="--", label="firewall fails")
        ax.legend()
    ax.set_xlabel("time (s)")
    ax.set_ylabel("throughput (Mbit/s)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save(fig, path)


def race_sweep_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Share of split sessions whose SYN-ACK beat the synced entry (left) and how long
    those took to open (right), against the delay on the FW1-FW2 link."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    delays = [r["delay (ms)"] for r in rows]
    left.plot(delays, [100 * r["share"] for r in rows], marker="o", color="tab:red")
    for r in rows:
        left.annotate(
            f"{r['raced']}/{r['split']}",
            (r["delay (ms)"], 100 * r["share"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    left.set_ylim(-5, 110)
    left.set_xlabel("delay on the FW1-FW2 link, each way (ms)")
    left.set_ylabel("split sessions that lost the race (%)")
    left.set_title("SYN-ACK at the peer before the synced entry")
    opened = [(r["delay (ms)"], r["raced sessions' median time to open (s)"]) for r in rows]
    opened = [(d, t) for d, t in opened if t is not None]
    right.plot([d for d, _ in opened], [t for _, t in opened], marker="o")
    right.set_ylim(bottom=0)
    right.set_xlabel("delay on the FW1-FW2 link, each way (ms)")
    right.set_ylabel("median time to open (s)")
    right.set_title("raced sessions open after the SYN-ACK retransmission")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save(fig, path)


def defer_latency_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Deferring: the time each new session's SYN is held (the agents' logs: median, 95th
    percentile, max; the captures' time through the firewall: median) and a split session's
    SYN-ACK (median) against the delay on the FW1-FW2 link, beside the link's round trip;
    raced sessions annotated (0 expected). A split session pays both."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    delays = [r["delay (ms)"] for r in rows]
    ax.plot(delays, [r["held median (ms)"] for r in rows], marker="o", label="SYN held, median (agent)")
    ax.plot(
        delays,
        [r["held p95 (ms)"] for r in rows],
        marker=".",
        linestyle=":",
        label="SYN held, 95th percentile",
    )
    ax.plot(delays, [r["held max (ms)"] for r in rows], marker="x", linestyle="--", label="SYN held, max")
    through = [
        (d, r["SYN through the firewall median (ms, captures)"]) for d, r in zip(delays, rows, strict=True)
    ]
    through = [(d, t) for d, t in through if t is not None]
    ax.plot(
        [d for d, _ in through],
        [t for _, t in through],
        marker="s",
        linestyle="",
        label="SYN in to out, median (captures)",
    )
    key = "split sessions' SYN-ACK held median (ms)"
    syn_ack = [(d, float(r[key])) for d, r in zip(delays, rows, strict=True) if r.get(key) is not None]
    if syn_ack:
        ax.plot(
            [d for d, _ in syn_ack],
            [t for _, t in syn_ack],
            marker="^",
            label="SYN-ACK held, median (split sessions)",
        )
    ax.plot(
        delays, [2 * d for d in delays], color="grey", linestyle="-.", label="link round trip (2 x delay)"
    )
    for r in rows:
        ax.annotate(
            f"raced {r['raced']}/{r['split']}",
            (r["delay (ms)"], r["held max (ms)"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=7,
        )
    ax.set_ylim(0, 1.2 * max([r["held max (ms)"] for r in rows] + [2 * d for d in delays] + [1]))
    ax.set_xlabel("delay on the FW1-FW2 link, each way (ms)")
    ax.set_ylabel("added latency per new session (ms)")
    ax.set_title("sync-defer: time a new session's SYN (SYN-ACK) waits for the peer's copy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
