"""A lab's topology as a drawing, from `Lab.describe()` (the report draws it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.plot.base import plt, save

TOPOLOGY_COLORS = {"switch": "#9ecae1", "host": "#e0e0e0", "device": "#fdae6b"}


def topology_figure(layout: Mapping[str, Any], path: Path, title: str) -> Path:
    """A lab's topology (`Lab.describe()`): switches, hosts and session devices (by role)
    with their addresses; impaired links dashed. Laid out by networkx (a seeded spring layout)."""
    import networkx as nx

    graph = nx.Graph()
    for node in layout["nodes"]:
        graph.add_node(node["name"])
    for link in layout["links"]:
        graph.add_edge(link["a"], link["b"], impaired=link["impaired"])
    positions = nx.spring_layout(graph, seed=1, k=1.5 / max(len(graph), 1) ** 0.5)
    size = max(6.0, 1.4 * len(graph) ** 0.5 * 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.75))
    for a, b, data in graph.edges(data=True):
        (xa, ya), (xb, yb) = positions[a], positions[b]
        ax.plot([xa, xb], [ya, yb], color="grey", linestyle="--" if data["impaired"] else "-", zorder=1)
    for node in layout["nodes"]:
        x, y = positions[node["name"]]
        kind = "device" if node["role"] else node["kind"]
        label = node["name"] + (f" ({node['role']})" if node["role"] else "")
        text = "\n".join([label, *node["addresses"]])
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=7,
            zorder=2,
            bbox={"boxstyle": "round", "facecolor": TOPOLOGY_COLORS[kind], "edgecolor": "#555"},
        )
    for kind, color in TOPOLOGY_COLORS.items():
        ax.scatter(
            [], [], color=color, marker="s", s=80, label=kind if kind != "device" else "session device"
        )
    ax.plot([], [], color="grey", linestyle="--", label="impaired link")
    ax.legend(loc="best", fontsize=7)
    ax.margins(0.15)
    ax.set_axis_off()
    ax.set_title(title)
    return save(fig, path)
