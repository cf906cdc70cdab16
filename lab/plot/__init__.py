"""Plots a network engineer pastes into a report: outcomes, packet timelines, session tables.

One module per family of figures; every figure function is importable from here, as is
`plt` (matplotlib without a display) and `save` for figures of one's own (the benchmarks).
"""

from lab.plot.balancing import comparison_figure, distribution_figure, requests_timeline, scaling_figure
from lab.plot.base import plt, save
from lab.plot.fabric import (
    defer_latency_figure,
    failover_figure,
    mode_figure,
    race_sweep_figure,
    sync_lag_figure,
)
from lab.plot.grids import (
    FTP_OUTCOME_COLOURS,
    VERDICT_COLOURS,
    attack_figure,
    ftp_matrix_figure,
    occupancy_figure,
    verdict_matrix_figure,
)
from lab.plot.sessions import (
    OUTCOME_STYLE,
    outcome_figure,
    packet_timeline,
    session_timeline,
    sessions_timeline,
)
from lab.plot.topology import TOPOLOGY_COLORS, topology_figure

__all__ = [
    "FTP_OUTCOME_COLOURS",
    "OUTCOME_STYLE",
    "TOPOLOGY_COLORS",
    "VERDICT_COLOURS",
    "attack_figure",
    "comparison_figure",
    "distribution_figure",
    "failover_figure",
    "ftp_matrix_figure",
    "mode_figure",
    "occupancy_figure",
    "outcome_figure",
    "packet_timeline",
    "plt",
    "race_sweep_figure",
    "requests_timeline",
    "save",
    "scaling_figure",
    "session_timeline",
    "sessions_timeline",
    "sync_lag_figure",
    "defer_latency_figure",
    "topology_figure",
    "verdict_matrix_figure",
]
