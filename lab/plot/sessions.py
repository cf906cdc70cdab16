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


IDLE_MARKERS = ("o", "s", "^", "D", "v", "P", "*")


def outcome_figure(rows: Sequence[Mapping[str, Any]], timeout: float, path: Path) -> Path:
    """Outcome against idle/timeout for every variant (left) and the time until the
    application knew (right), a row per variant on both sides: variants that behave alike
    would hide one another on a shared axis. Rows: variant, idle, outcome, learned_after."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    idles = sorted({r["idle"] for r in rows})
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 0.55 * len(variants) + 2.4), sharey=True, gridspec_kw={"width_ratios": [1, 1]}
    )
    outcome_points(left, right, rows, variants, OUTCOME_STYLE, 1 / timeout)
    left.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set_yticks(range(len(variants)), variants)
    left.set_ylim(-0.6, len(variants) - 0.4)
    left.invert_yaxis()
    left.set_xlabel("idle time / session timeout")
    left.set_title("outcome of the first segment after idle")
    for outcome, (color, marker) in OUTCOME_STYLE.items():
        left.scatter([], [], c=color, marker=marker, label=outcome)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncols=3, fontsize=8)
    right.axvline(timeout, color="grey", linestyle="--", linewidth=1)
    right.text(timeout, -0.55, f" timeout {timeout:g}s", fontsize=8, color="dimgrey", va="top")
    idle_legend(right, idles, -0.09)
    right.set_xlim(0, 1.06 * max([r["learned_after"] for r in rows] + [timeout]))
    right.set_xlabel("time until the application knew the outcome (s)")
    right.set_title("when the application learns the outcome")
    right.grid(axis="x", alpha=0.3)
    return save(fig, path)


def _runs(labels: Sequence[str]) -> str:
    """Segment labels in order with repeats counted (`S, SA, A, PA 11B x5`), three a line."""
    parts: list[list[Any]] = []
    for label in labels:
        if parts and parts[-1][0] == label:
            parts[-1][1] += 1
        else:
            parts.append([label, 1])
    words = [label + (f" \u00d7{n}" if n > 1 else "") for label, n in parts]
    return "\n".join(", ".join(words[i : i + 3]) for i in range(0, len(words), 3))


def packet_timeline(
    lanes: Mapping[str, Sequence[TcpSegment]],
    client: tuple[str, int],
    t0: float,
    marks: Mapping[str, float],
    path: Path,
    title: str,
    xlabel: str = "time since the start of idle (s)",
) -> Path:
    """One lane per capture point; each segment of the client's session as a mark.
    Arrows right: client to server; left: server to client. `marks`: label -> time.
    Segments close in time share one label (their flags in order, repeats counted), so a
    handshake and its data read as one line instead of a pile at one instant."""
    fig, ax = plt.subplots(figsize=(13, 1.5 * len(lanes) + 1.8))
    names = list(lanes)
    kept = {
        name: [s for s in lanes[name] if (s.src, s.sport) == client or (s.dst, s.dport) == client]
        for name in names
    }
    times = [s.time - t0 for segs in kept.values() for s in segs] + [w - t0 for w in marks.values()]
    low, high = (min(times), max(times)) if times else (0.0, 1.0)
    span = max(high - low, 1e-3)
    for y, name in enumerate(names):
        for outbound in (True, False):
            segs = sorted(
                (s for s in kept[name] if ((s.src, s.sport) == client) == outbound), key=lambda s: s.time
            )
            groups: list[list[TcpSegment]] = []
            for seg in segs:
                if groups and seg.time - groups[-1][-1].time < 0.04 * span:
                    groups[-1].append(seg)
                else:
                    groups.append([seg])
            for n, group in enumerate(groups):
                xs = [s.time - t0 for s in group]
                colors = [
                    "tab:red" if "R" in s.flags else ("tab:blue" if outbound else "tab:green") for s in group
                ]
                ax.scatter(xs, [y] * len(xs), marker=">" if outbound else "<", c=colors, s=70, zorder=3)
                text = _runs([s.flags + (f" {s.payload_len}B" if s.payload_len else "") for s in group])
                lift = 10 + 11 * (n % 2)  # neighbouring labels at two heights
                ax.annotate(
                    text,
                    ((xs[0] + xs[-1]) / 2, y),
                    textcoords="offset points",
                    xytext=(0, lift if outbound else -lift),
                    ha="center",
                    va="bottom" if outbound else "top",
                    fontsize=7,
                )
    for label, when in marks.items():
        ax.axvline(when - t0, color="grey", linestyle="--", linewidth=1)
        # along the line, inside the axes: a label at the right edge stays in the picture
        ax.text(
            when - t0,
            0.98,
            label + " ",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="top",
            fontsize=8,
            color="dimgrey",
        )
    ax.set_xlim(low - 0.04 * span, high + 0.04 * span)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.9, len(names) - 0.1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.scatter([], [], marker=">", c="tab:blue", label="client -> server")
    ax.scatter([], [], marker="<", c="tab:green", label="server -> client")
    ax.scatter([], [], marker="s", c="tab:red", label="RST")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


ZERO_MEANS = (
    "0 s left: the session has less than a second to live, or has expired and the kernel has "
    "not removed it yet; a gap: no such session in the table"
)


def session_timeline(
    series: Mapping[str, Sequence[tuple[float, int | None]]], timeout: float, path: Path, title: str
) -> Path:
    """Remaining timeout of each session over time (a gap: no entry in the table), one
    panel per session on a shared time axis, each on its own scale: sessions that idle alike
    have the same curve, and a 2 s countdown beside a 20 s one would read as a flat line."""
    rows = max(len(series), 1)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.35 * rows + 1.7), sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (ax, (label, points)) in enumerate(zip(axes[:, 0], series.items(), strict=False)):
        color = colors[n % len(colors)]
        xs = [t for t, _ in points]
        ys = [float(v) if v is not None else float("nan") for _, v in points]
        seen = [y for y in ys if y == y]
        top = max(seen) if seen else timeout
        ax.step(xs, ys, where="post", color=color)
        ax.axhline(0, color="grey", linewidth=0.6, linestyle=":")
        ax.set_ylim(-0.12 * max(top, 1), 1.25 * max(top, 1))
        ax.set_ylabel("s left", fontsize=8)
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # conntrack counts whole seconds
        ax.set_title(label, loc="left", fontsize=8, pad=2)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time since the start of idle (s)")
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.01, ZERO_MEANS, ha="center", va="bottom", fontsize=9, color="dimgrey")
    return save(fig, path, rect=(0, 0.04, 1, 1))


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


def idle_legend(ax: Any, idles: Sequence[float], below: float) -> None:
    """The legend of an outcome chart's right panel: each idle time's marker shape (colour
    is the outcome), `below` the axes (a negative axes fraction)."""
    for n, idle in enumerate(idles):
        ax.scatter(
            [],
            [],
            c="white",
            edgecolors="black",
            marker=IDLE_MARKERS[n % len(IDLE_MARKERS)],
            label=f"idle {idle:g}s",
        )
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, below),
        ncols=len(idles),
        fontsize=8,
        title="shape: idle time; colour: outcome",
        title_fontsize=8,
    )


def outcome_points(
    left: Any,
    right: Any,
    rows: Sequence[Mapping[str, Any]],
    variants: Sequence[str],
    style: Mapping[str, tuple[str, str]],
    scale: float = 1.0,
) -> None:
    """An outcome chart's points: on the left each probe's outcome at its idle time (x
    `scale`), on the right when its application knew it, each idle time its own marker and
    height within its variant's row; a rule between rows."""
    idles = sorted({r["idle"] for r in rows})
    spread = 0.5 / max(len(idles), 1)  # each idle time its own height within a variant's row
    for y, variant in enumerate(variants):
        for r in (r for r in rows if r["variant"] == variant):
            color, marker = style[r["outcome"]]
            left.scatter(r["idle"] * scale, y, c=color, marker=marker, s=120, zorder=3)
            n = idles.index(r["idle"])
            right.scatter(
                r["learned_after"],
                y + (n - (len(idles) - 1) / 2) * spread,
                c=color,
                marker=IDLE_MARKERS[n % len(IDLE_MARKERS)],
                s=45,
                zorder=3,
                edgecolors="black",
                linewidths=0.4,
            )
    for y in range(len(variants)):
        for ax in (left, right):
            ax.axhline(y + 0.5, color="#e4e4e4", linewidth=0.8, zorder=0)
