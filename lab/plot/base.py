"""What every figure shares: matplotlib without a display, imported when the first figure
is drawn (the lab suites import the plotting functions, and `sessionlab` collects the
suites for every `run` and `list`: about a second of matplotlib each time otherwise), and
one way to write a figure."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

__all__ = ["plt", "save"]


@functools.cache
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


class _Pyplot:
    """matplotlib.pyplot (on the Agg backend), imported on first use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_pyplot(), name)


plt: Any = _Pyplot()


def save(fig: Any, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (within `rect` of the figure, to leave room for a footnote), write (PNG,
    110 dpi) and close a figure; its path."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
