"""A device's behaviour profile (S6): the idle-time search, the UDP and TCP lifetimes against
the RFC minimums, and the capacity curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.characterize.bisect import Round
from lab.plot.base import plt, save

Bracket = Sequence[float | None]  # [low, high]; high None: alive at the maximum

# The requirement lines drawn beside measured lifetimes: (seconds, label).
UDP_LINES = ((120.0, "RFC 4787 REQ-5: 2 min"), (300.0, "REQ-5 c) recommended: 5 min"))
TCP_LINE = (7440.0, "RFC 5382 REQ-5: 2 h 4 min")


def _rounds(rounds: Sequence[Round | Mapping[str, Any]]) -> list[Round]:
    """Rounds from the search itself or from profile.json's probe details."""
    return [r if isinstance(r, Round) else Round.from_dict(r) for r in rounds]


def _probe_rows(ax: Any, rounds: Sequence[Round]) -> None:
    """One row per round: alive probes as green dots, dead ones as red crosses."""
    for r in rounds:
        alive = [t for t, ok in r.probes if ok]
        dead = [t for t, ok in r.probes if not ok]
        ax.scatter(alive, [r.index] * len(alive), marker="o", color="tab:green", zorder=3)
        ax.scatter(dead, [r.index] * len(dead), marker="x", color="tab:red", zorder=3)
    indices = [r.index for r in rounds] or [1]
    ax.set_yticks(indices, [f"round {i}" for i in indices])
    ax.set_ylim(max(indices) + 0.6, min(indices) - 0.6)
    ax.set_xlabel("idle time (s)")
    ax.grid(axis="x", alpha=0.3, which="both")


def search_figure(rounds: Sequence[Round | Mapping[str, Any]], path: Path, title: str) -> Path:
    """Each probe's outcome (alive / dead) against its idle time, one row per round (round 1 on
    top), the final bracket shaded; on the right, the rounds after the first, zoomed in."""
    done = _rounds(rounds)
    later = done[1:]
    fig, axes = plt.subplots(1, 2 if later else 1, figsize=(12, 2.4 + 0.5 * max(len(done), 1)), squeeze=False)
    overview = axes[0][0]
    _probe_rows(overview, done)
    times = [t for r in done for t, _ in r.probes]
    if times:
        last = done[-1]
        if last.high is None:
            label, high = f"alive at the maximum: > {last.low:g} s", max(times) * 1.15
        else:
            label, high = f"bracket {last.low:g} to {last.high:g} s", last.high
        for ax in axes[0]:
            ax.axvspan(max(last.low, min(times) / 2), high, color="tab:blue", alpha=0.2, label=label)
        if max(times) / max(min(times), 1e-3) > 20:
            overview.set_xscale("log")
    else:
        overview.text(0.5, 0.5, "no probe ran", ha="center", va="center", transform=overview.transAxes)
    overview.scatter([], [], marker="o", color="tab:green", label="alive (survived the idle time)")
    overview.scatter([], [], marker="x", color="tab:red", label="dead")
    overview.set_title(title)
    overview.legend(fontsize=8, loc="best")
    if later:
        zoom = axes[0][1]
        _probe_rows(zoom, later)
        first = done[0]
        zoom.set_xlim(first.low, first.high if first.high is not None else max(times))
        zoom.set_title("after round 1, zoomed in")
    return save(fig, path)


def lifetimes_figure(
    outbound: Bracket | None,
    bidirectional: Bracket | None,
    path: Path,
    title: str,
    tcp: Bracket | None = None,
) -> Path:
    """UDP lifetimes (refreshed from inside only, traffic both ways) side by side, the TCP idle
    timeout beside them if given, each as its measured bracket, with the RFC minimums drawn."""
    rows: list[tuple[str, Bracket | None]] = [
        ("UDP, from inside only", outbound),
        ("UDP, both ways", bidirectional),
    ]
    if tcp is not None:
        rows.append(("TCP established", tcp))
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.7 * len(rows)))
    ends = [x for _, b in rows if b for x in b if x]
    right = max([*ends, 300.0 if tcp is None else 7440.0]) * 1.5
    for y, (_, bracket) in enumerate(rows):
        if not bracket:
            ax.text(1, y, "not measured", va="center", fontsize=9, color="grey")
            continue
        low, high = bracket
        low = max(low or 0.0, 1.0)  # the axis starts at 1 s
        ax.barh(y, low - 1, left=1, height=0.35, color="tab:blue", alpha=0.3)
        if high is None:
            ax.annotate(
                "", xy=(right, y), xytext=(low, y), arrowprops={"arrowstyle": "->", "color": "tab:blue"}
            )
            text = f"> {bracket[0]:g} s (alive at the maximum)"
        else:
            ax.plot([low, high], [y, y], marker="|", markersize=14, color="navy", linewidth=4)
            text = f"{bracket[0]:g} to {high:g} s"
        ax.annotate(text, (low, y), textcoords="offset points", xytext=(0, 12), fontsize=8)
    lines = [*UDP_LINES, *([TCP_LINE] if tcp is not None else [])]
    for (seconds, label), colour in zip(lines, ("tab:red", "tab:orange", "tab:purple"), strict=False):
        ax.axvline(seconds, color=colour, linestyle="--", label=label)
    ax.set_xscale("log")
    ax.set_xlim(1, right)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlabel("idle time survived (light) and the bracket where it ends (dark); s, log scale")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def capacity_figure(
    attempted: Sequence[int], held: Sequence[int], path: Path, title: str, bound: int | None = None
) -> Path:
    """Concurrent sessions the device held against sessions attempted (RFC 9411 concurrent TCP
    connection capacity); the diagonal is every session held, the bound the user set marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if attempted:
        top = max([*attempted, *held, bound or 0])
        ax.plot([0, top], [0, top], color="grey", linestyle=":", label="every session held")
        ax.plot(attempted, held, marker="o", color="tab:blue", label="sessions held")
        ax.annotate(f"{held[-1]}", (attempted[-1], held[-1]), textcoords="offset points", xytext=(5, -12))
        if bound:
            ax.axvline(bound, color="tab:red", linestyle="--", label=f"bound set: {bound}")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("sessions attempted")
    ax.set_ylabel("sessions held (carrying data)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save(fig, path)
