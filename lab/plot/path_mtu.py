"""A transfer across a narrower link, as the captures show it: the data delivered over time
and the size of every packet the sender sent, with the too-big errors marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.plot.base import plt, save


def transfer_figure(
    delivered: Mapping[str, Sequence[tuple[float, int]]],
    sizes: Sequence[tuple[float, int]],
    errors: Mapping[str, Sequence[float]],
    mtu: int,
    path: Path,
    title: str,
    end: tuple[float, str] | None = None,
) -> Path:
    """Top: bytes delivered over time (s from the transfer's start), a line per
    capture point; bottom: the size (IP bytes) of each data segment the sender sent, the
    narrow link's MTU as a line, and the too-big errors as ticks per capture point. `end`:
    when the client ended (s) and how, a dotted line on both."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True)
    for label, points in delivered.items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        top.step(xs, [y / 1024 for y in ys], where="post", label=label)
    top.set_ylabel("data delivered (KiB)")
    top.legend(fontsize=8, loc="upper left")
    top.set_title(title, fontsize=9)
    if sizes:
        xs, ys = zip(*sizes, strict=True)
        bottom.plot(xs, ys, "o", markersize=3, alpha=0.6, label="segment the sender sent")
    bottom.axhline(mtu, color="grey", linestyle="--", linewidth=1, label=f"narrow link's MTU ({mtu})")
    for i, (label, times) in enumerate(errors.items()):  # an empty one still has its legend entry
        bottom.plot(times, [mtu - 120 * (i + 1)] * len(times), "|", markersize=12, label=label)
    if end is not None:
        for ax in (top, bottom):
            ax.axvline(end[0], color="black", linestyle=":", linewidth=1, label=end[1] if ax is top else None)
        top.legend(fontsize=8, loc="upper left")
    bottom.set_ylabel("IP packet size (bytes)")
    bottom.set_xlabel("time (s)")
    bottom.legend(fontsize=7, loc="lower right")
    return save(fig, path)
