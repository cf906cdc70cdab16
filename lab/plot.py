"""Plots a network engineer pastes into a report: outcomes, packet timelines, session tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lab.packets import TcpSegment  # noqa: E402


def save(fig: Any, path: Path) -> Path:
    """Lay out, write (PNG, 110 dpi) and close a figure; its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def distribution_figure(
    counts: Mapping[str, Mapping[str, int]], servers: Sequence[str], path: Path, title: str
) -> Path:
    """Requests per real server, a bar per server stacked by client (client -> server ->
    requests), with each bar's total above it."""
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0] * len(servers)
    for client, per_server in counts.items():
        heights = [per_server.get(s, 0) for s in servers]
        ax.bar(servers, heights, bottom=bottom, label=client)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, total in enumerate(bottom):
        ax.annotate(str(total), (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("requests answered (servers' logs)")
    ax.set_title(title)
    ax.legend(title="client", fontsize=8)
    return save(fig, path)


def requests_timeline(
    series: Mapping[str, Sequence[float]],
    failures: Sequence[float],
    markers: Mapping[str, float],
    path: Path,
    title: str,
    bin_s: float = 0.25,
) -> Path:
    """Requests per second over time: a line per real server (the times each answered,
    from its log), failed requests as red crosses per bin, and vertical event markers."""
    ends = [t for ts in series.values() for t in ts] + list(failures) + list(markers.values())
    span = max(ends, default=1.0) + bin_s
    bins = [i * bin_s for i in range(int(span / bin_s) + 1)]

    def rate(times: Sequence[float]) -> list[float]:
        counts = [0] * len(bins)
        for t in times:
            counts[min(int(t / bin_s), len(bins) - 1)] += 1
        return [c / bin_s for c in counts]

    fig, ax = plt.subplots(figsize=(10, 4))
    styles = ("o", "s", "^", "v", "D", "P")
    for i, (name, times) in enumerate(series.items()):
        ax.plot(bins, rate(times), marker=styles[i % len(styles)], markersize=3, linewidth=1, label=name)
    if failures:
        failed = rate(failures)
        xs = [x for x, r in zip(bins, failed, strict=True) if r]
        ax.scatter(xs, [r for r in failed if r], marker="x", color="red", s=30, label="failed", zorder=5)
    for i, (label, t) in enumerate(markers.items()):
        ax.axvline(t, color="grey", linestyle=("--", ":", "-.")[i % 3], linewidth=1)
        ax.annotate(label, (t, ax.get_ylim()[1]), rotation=90, fontsize=7, va="top", ha="right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests/s")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    return save(fig, path)


def scaling_figure(rates: Mapping[int, float], extra: Mapping[str, float], path: Path, title: str) -> Path:
    """Requests/s against the number of real servers (measured, and the ideal: n times
    one server), with other configurations as labelled points."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ns = sorted(rates)
    ax.plot(ns, [rates[n] for n in ns], marker="o", label="measured")
    ax.plot(ns, [rates[ns[0]] * n / ns[0] for n in ns], linestyle="--", color="grey", label="n x one server")
    for i, (label, value) in enumerate(extra.items()):
        ax.scatter([2], [value], marker=("s", "^", "D")[i % 3], s=60, zorder=5, label=label)
    for n in ns:
        ax.annotate(f"{rates[n]:.0f}", (n, rates[n]), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xticks(ns)
    ax.set_xlabel("real servers")
    ax.set_ylabel("requests/s (wrk)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, path)


def comparison_figure(
    counts: Mapping[str, Mapping[str, int]], rates: Mapping[str, float], path: Path, title: str
) -> Path:
    """The same traffic through several balancers: requests per server, a group of bars
    per balancer (balancer -> server -> requests), and each balancer's requests/s."""
    fig, (bars, speed) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    kinds = list(counts)
    servers = sorted({s for per in counts.values() for s in per})
    width = 0.8 / max(1, len(servers))
    for i, server in enumerate(servers):
        xs = [k + (i - (len(servers) - 1) / 2) * width for k in range(len(kinds))]
        bars.bar(xs, [counts[kind].get(server, 0) for kind in kinds], width, label=server)
    bars.set_xticks(range(len(kinds)), kinds, fontsize=8)
    bars.set_ylabel("requests answered (servers' logs)")
    bars.legend(title="server", fontsize=8)
    bars.set_title("where the sessions went")
    speed.barh(kinds, [rates[k] for k in kinds], color="tab:gray")
    for y, kind in enumerate(kinds):
        speed.annotate(f"{rates[kind]:,.0f}", (rates[kind], y), va="center", fontsize=8)
    speed.invert_yaxis()
    speed.set_xlabel("requests/s (wrk, kept-open connections)")
    speed.set_title("throughput")
    fig.suptitle(title, fontsize=10)
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
