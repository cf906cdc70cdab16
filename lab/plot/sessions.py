"""One session and its packets: outcomes after idle (S1), packet lanes per capture point,
session tables' remaining timeouts, several sessions side by side (S3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.packets import TcpSegment
from lab.plot.base import plt, save

OUTCOME_STYLE = {
    "delivered": ("tab:green", "o"),
    "reset": ("tab:orange", "s"),
    "hung": ("tab:red", "X"),
}


def outcome_figure(rows: Sequence[Mapping[str, Any]], timeout: float, path: Path) -> Path:
    """Outcome against idle/timeout for every variant (left) and the time until the
    application knew (right). Rows: variant, idle, outcome, learned_after."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.55 * len(variants) + 2.4))
    for y, variant in enumerate(variants):
        mine = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["idle"])
        for r in mine:
            color, marker = OUTCOME_STYLE[r["outcome"]]
            left.scatter(r["idle"] / timeout, y, c=color, marker=marker, s=120, zorder=3)
            left.annotate(
                f"{r['learned_after']:.1f}s",
                (r["idle"] / timeout, y),
                textcoords="offset points",
                xytext=(0, 9),
                ha="center",
                fontsize=7,
            )
        right.plot([r["idle"] for r in mine], [r["learned_after"] for r in mine], marker="o", label=variant)
    left.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_yticks(range(len(variants)), variants)
    left.set_ylim(-0.7, len(variants) - 0.3)
    left.invert_yaxis()
    left.set_xlabel("idle time / session timeout")
    left.set_title("outcome of the first segment after idle")
    for outcome, (color, marker) in OUTCOME_STYLE.items():
        left.scatter([], [], c=color, marker=marker, label=outcome)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncols=3, fontsize=8)
    top = max([r["idle"] for r in rows] + [timeout])
    right.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="idle time")
    right.axhline(timeout, color="grey", linestyle="--", linewidth=1, label=f"timeout {timeout:g}s")
    right.set_xlabel("idle time (s)")
    right.set_ylabel("time until the application knew (s)")
    right.set_title("when the application learns the outcome")
    right.legend(fontsize=7)
    return save(fig, path)


def packet_timeline(
    lanes: Mapping[str, Sequence[TcpSegment]],
    client: tuple[str, int],
    t0: float,
    marks: Mapping[str, float],
    path: Path,
    title: str,
) -> Path:
    """One lane per capture point; each segment of the client's session as a labelled mark.
    Arrows right: client to server; left: server to client. `marks`: label -> time."""
    fig, ax = plt.subplots(figsize=(13, 1.2 * len(lanes) + 1.8))
    names = list(lanes)
    for y, name in enumerate(names):
        for seg in lanes[name]:
            outbound = (seg.src, seg.sport) == client
            if not outbound and (seg.dst, seg.dport) != client:
                continue
            color = "tab:red" if "R" in seg.flags else ("tab:blue" if outbound else "tab:green")
            x = seg.time - t0
            ax.scatter(x, y, marker=">" if outbound else "<", c=color, s=70, zorder=3)
            label = seg.flags + (f" {seg.payload_len}B" if seg.payload_len else "")
            ax.annotate(
                label,
                (x, y),
                textcoords="offset points",
                xytext=(0, 10 if outbound else -16),
                ha="center",
                fontsize=6,
                rotation=60 if outbound else -60,
            )
    for label, when in marks.items():
        ax.axvline(when - t0, color="grey", linestyle="--", linewidth=1)
        ax.annotate(label, (when - t0, len(names) - 0.45), fontsize=8, color="dimgrey")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.set_xlabel("time since the start of idle (s)")
    ax.set_title(title)
    ax.scatter([], [], marker=">", c="tab:blue", label="client -> server")
    ax.scatter([], [], marker="<", c="tab:green", label="server -> client")
    ax.scatter([], [], marker="s", c="tab:red", label="RST")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def session_timeline(
    series: Mapping[str, Sequence[tuple[float, int | None]]], timeout: float, path: Path, title: str
) -> Path:
    """Remaining timeout of each session over time (a gap: no entry in the table), one
    panel per session on a shared time axis: sessions that idle alike have the same
    curve, and drawn on one axis all but the last would be hidden."""
    rows = max(len(series), 1)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.2 * rows + 1.4), sharex=True, squeeze=False)
    top = max([float(v) for points in series.values() for _, v in points if v is not None] + [timeout])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (ax, (label, points)) in enumerate(zip(axes[:, 0], series.items(), strict=False)):
        color = colors[n % len(colors)]
        xs = [t for t, _ in points]
        ys = [float(v) if v is not None else float("nan") for _, v in points]
        ax.step(xs, ys, where="post", color=color)
        ax.set_ylim(-0.05 * top, 1.1 * top)
        ax.set_ylabel("s left", fontsize=8)
        ax.text(0.01, 0.85, label, transform=ax.transAxes, fontsize=8, va="top")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time since the start of idle (s)")
    axes[0, 0].set_title(title)
    return save(fig, path)


def sessions_timeline(
    rows: Mapping[str, Sequence[tuple[float, str]]],
    markers: Mapping[str, float],
    path: Path,
    title: str,
) -> Path:
    """Several sessions side by side over time: a row per session (label -> (time, what)
    for each captured segment, `what` naming its direction or kind), and vertical markers
    (label -> time). Every series is drawn with its own marker so none hides another."""
    fig, ax = plt.subplots(figsize=(11, 0.9 * len(rows) + 2))
    kinds = sorted({what for points in rows.values() for _, what in points})
    styles = dict(zip(kinds, ("o", "s", "^", "v", "D", "x", "P", "*"), strict=False))
    colours = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    labelled: set[str] = set()
    for y, points in enumerate(rows.values()):
        for kind in kinds:
            xs = [t for t, what in points if what == kind]
            if xs:
                offset = (kinds.index(kind) - (len(kinds) - 1) / 2) * 0.12
                label = None if kind in labelled else kind
                labelled.add(kind)
                ax.scatter(
                    xs, [y + offset] * len(xs), marker=styles[kind], color=colours[kind], s=14, label=label
                )
    for i, (label, t) in enumerate(markers.items()):
        ax.axvline(t, color="grey", linestyle=("--", ":", "-.")[i % 3], linewidth=1)
        ax.annotate(label, (t, len(rows) - 0.4), rotation=90, fontsize=7, va="top", ha="right")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)
