"""UDP flows through a session device (S1-UDP): outcome against idle time with the
device's timeouts marked, and a datagram timeline per capture point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from lab.plot.base import plt, save
from lab.plot.sessions import idle_legend, outcome_points

UDP_OUTCOME_STYLE = {
    "delivered": ("tab:green", "o"),
    "lost": ("tab:red", "X"),
    "no-path": ("tab:grey", "s"),
}


class Datagram(Protocol):
    """What the timeline needs of a captured datagram (lab.traffic.udp.Datagram)."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    data: str


def udp_outcome_figure(rows: Sequence[Mapping[str, Any]], timeouts: Mapping[str, float], path: Path) -> Path:
    """Outcome of the server's datagram after idle, against the idle time in seconds (left),
    and when the client knew (right), a row per variant; the device's timeouts (label ->
    seconds) as dashed lines: a UDP flow has more than one, so idle is not divided by one.
    Rows: variant, idle, outcome, learned_after."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    idles = sorted({r["idle"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.6 * len(variants) + 2.6), sharey=True)
    outcome_points(left, right, rows, variants, UDP_OUTCOME_STYLE)
    styles = ("--", ":", "-.")
    for n, (label, seconds) in enumerate(timeouts.items()):
        for ax in (left, right):
            ax.axvline(seconds, color="grey", linestyle=styles[n % len(styles)], linewidth=1)
        left.text(seconds, -0.55, f" {label} {seconds:g}s", fontsize=8, color="dimgrey", va="top", rotation=0)
    left.set_yticks(range(len(variants)), variants)
    left.set_ylim(-0.7, len(variants) - 0.4)
    left.invert_yaxis()
    left.set_xlim(0, 1.1 * max(idles + list(timeouts.values())))
    left.set_xlabel("idle time: the server answers this long after the client's last datagram (s)")
    left.set_title("outcome of the server's datagram after idle")
    for outcome, (color, marker) in UDP_OUTCOME_STYLE.items():
        left.scatter([], [], c=color, marker=marker, label=outcome)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3, fontsize=8)
    idle_legend(right, idles, -0.1)
    right.set_xlim(0, 1.06 * max([r["learned_after"] for r in rows] + list(timeouts.values())))
    right.set_xlabel("time from the client's last datagram until it knew the outcome (s)")
    right.set_title("when the client learns the outcome")
    right.grid(axis="x", alpha=0.3)
    return save(fig, path)


def datagram_timeline(
    lanes: Mapping[str, Sequence[Datagram]],
    flows: Mapping[str, Sequence[tuple[str, int]]],
    t0: float,
    marks: Mapping[str, float],
    path: Path,
    title: str,
) -> Path:
    """One lane per capture point; each datagram of one client as a mark labelled with its
    text. `flows`: lane -> the client's address:port pairs as that capture point sees them
    (behind a NAT, the outside lane sees the mapped ones); a datagram from one of them
    points right (client -> server), to one of them left. `marks`: label -> wall time."""
    fig, ax = plt.subplots(figsize=(13, 1.6 * len(lanes) + 1.8))
    times: list[float] = [w - t0 for w in marks.values()]
    names = list(lanes)
    for y, name in enumerate(names):
        ends = set(flows[name])
        kept = [d for d in lanes[name] if (d.src, d.sport) in ends or (d.dst, d.dport) in ends]
        for n, d in enumerate(sorted(kept, key=lambda d: d.time)):
            outbound = (d.src, d.sport) in ends
            x = d.time - t0
            times.append(x)
            ax.scatter(
                [x], [y], marker=">" if outbound else "<", c="tab:blue" if outbound else "tab:green", s=60
            )
            lift = 9 + 10 * (n % 3)
            ax.annotate(
                f"{d.data} (:{d.sport if outbound else d.dport})",
                (x, y),
                textcoords="offset points",
                xytext=(0, lift if outbound else -lift),
                ha="center",
                va="bottom" if outbound else "top",
                fontsize=6.5,
            )
    for n, (label, when) in enumerate(marks.items()):  # labels left and right in turn: marks close
        ax.axvline(when - t0, color="grey", linestyle="--", linewidth=1)
        ax.text(
            when - t0,
            0.98,
            f" {label} ",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right" if n % 2 == 0 else "left",
            va="top",
            fontsize=8,
            color="dimgrey",
        )
    low, high = (min(times), max(times)) if times else (0.0, 1.0)
    span = max(high - low, 1e-3)
    ax.set_xlim(low - 0.05 * span, high + 0.05 * span)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.9, len(names) - 0.1)
    ax.set_xlabel("time since the client's last datagram before idle (s)")
    ax.set_title(title)
    ax.scatter([], [], marker=">", c="tab:blue", label="client -> server (client's port as seen there)")
    ax.scatter([], [], marker="<", c="tab:green", label="server -> client")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)
