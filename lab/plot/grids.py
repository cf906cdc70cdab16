"""Outcomes as grids and curves: the FTP matrix (S3), crafted packets against filters, the
legitimate clients' success under attack and the session table's size (S5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.plot.base import plt, save

FTP_OUTCOME_COLOURS = {
    "ok": "#4caf50",
    "dropped at fwc": "#e53935",
    "dropped at fws": "#fb8c00",
    "refused: private address": "#8e24aa",
}


def ftp_matrix_figure(
    table: Mapping[str, Mapping[str, str]],
    times: Mapping[str, Mapping[str, float | None]],
    modes: Sequence[str],
    path: Path,
) -> Path:
    """The FTP matrix as a heat map: a row per setup (position, ALG, NAT), a column per
    mode; colour = outcome, label = transfer time or what failed."""
    from matplotlib.colors import ListedColormap

    rows = list(table)
    outcomes = list(FTP_OUTCOME_COLOURS)
    other = len(outcomes)  # anything unforeseen: grey
    grid = [[outcomes.index(table[r][m]) if table[r][m] in outcomes else other for m in modes] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    cmap = ListedColormap([*FTP_OUTCOME_COLOURS.values(), "#9e9e9e"])
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=other, aspect="auto")
    for y, row in enumerate(rows):
        for x, mode in enumerate(modes):
            outcome = table[row][mode]
            seconds = times[row][mode]
            label = f"{seconds:.2f} s" if outcome == "ok" and seconds is not None else outcome
            ax.text(x, y, label, ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(len(modes)), modes)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_title("FTP download: outcome (transfer time when it worked)", pad=24)
    return save(fig, path)


VERDICT_COLOURS = {"dropped": "#2e7d32", "passed": "#c62828"}


def verdict_matrix_figure(
    table: Mapping[str, Mapping[str, str]], columns: Sequence[str], path: Path, title: str
) -> Path:
    """Crafted packets against filters as a grid: a row per packet, a column per filter;
    colour and label = what the captures showed (passed or dropped)."""
    from matplotlib.colors import ListedColormap

    rows = list(table)
    verdicts = list(VERDICT_COLOURS)
    other = len(verdicts)
    grid = [
        [verdicts.index(table[r][c]) if table[r][c] in verdicts else other for c in columns] for r in rows
    ]
    fig, ax = plt.subplots(figsize=(6.5, 0.42 * len(rows) + 1.6))
    ax.imshow(
        grid, cmap=ListedColormap([*VERDICT_COLOURS.values(), "#9e9e9e"]), vmin=0, vmax=other, aspect="auto"
    )
    for y, row in enumerate(rows):
        for x, column in enumerate(columns):
            ax.text(x, y, table[row][column], ha="center", va="center", fontsize=8, color="white")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_title(title, pad=24, fontsize=9)
    return save(fig, path)


def attack_figure(curves: Mapping[str, Sequence[tuple[float, float]]], path: Path, title: str) -> Path:
    """Legitimate clients' success rate (%) against the attack's rate, a line per defence,
    each with its own marker and style so that coinciding lines stay visible."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = ("-", "--", "-.", ":")
    for i, (label, points) in enumerate(curves.items()):
        xs, ys = zip(*sorted(points), strict=True) if points else ((), ())
        ax.plot(xs, ys, marker="osD^vP*"[i % 7], linestyle=styles[i % 4], label=label, alpha=0.85)
    ax.set_xlabel("attack: SYNs per second (measured)")
    ax.set_ylabel("legitimate sessions that worked (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, path)


def occupancy_figure(
    series: Mapping[str, Sequence[tuple[float, float]]], limits: Mapping[str, float], path: Path, title: str
) -> Path:
    """A session table's size over time, a line per series (label -> (time, entries)),
    with horizontal lines for limits (label -> entries)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    styles = ("-", "--", "-.", ":")
    for i, (label, points) in enumerate(series.items()):
        xs, ys = zip(*points, strict=True) if points else ((), ())
        ax.plot(xs, ys, linestyle=styles[i % 4], marker="o" if len(points) < 60 else None, ms=3, label=label)
    for label, value in limits.items():
        ax.axhline(value, color="grey", linestyle=":", linewidth=1)
        ax.annotate(label, (0, value), textcoords="offset points", xytext=(2, 3), fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sessions in the table")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)
