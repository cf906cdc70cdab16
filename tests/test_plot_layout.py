"""Plot layout from synthetic data: every series of S1's outcome panel in a place of its own,
packet labels grouped instead of piled up, remaining-timeout panels on their own scales."""

from pathlib import Path

from lab.packets import TcpSegment
from lab.plot import outcome_figure, packet_timeline, plt, session_timeline
from lab.plot.sessions import _runs


def test_outcome_figure_gives_every_variant_and_idle_its_own_point(tmp_path, monkeypatch):
    drawn: list = []
    monkeypatch.setattr("lab.plot.sessions.save", lambda fig, path, rect=None: drawn.append(fig) or path)
    # ten variants that learn alike: on one shared axis all but one would be hidden
    rows = [
        {"variant": f"v{v}", "idle": idle, "outcome": "delivered", "learned_after": idle}
        for v in range(10)
        for idle in (1.0, 3.0, 6.0)
    ]
    outcome_figure(rows, 2.0, tmp_path / "o.png")
    right = drawn[0].axes[1]
    points = {tuple(p) for c in right.collections for p in c.get_offsets()}
    assert len(points) == 30
    plt.close(drawn[0])


def test_packet_labels_close_in_time_share_one_label():
    assert _runs(["S", "SA", "A", "PA 6B", "A"]) == "S, SA, A\nPA 6B, A"
    assert _runs(["PA 11B"] * 5) == "PA 11B \u00d75"


def test_packet_timeline_keeps_its_marks_inside_the_picture(tmp_path, monkeypatch):
    drawn: list = []
    monkeypatch.setattr("lab.plot.sessions.save", lambda fig, path, rect=None: drawn.append(fig) or path)
    client = ("10.0.1.10", 10000)
    segs = [
        TcpSegment("10.0.1.10", "10.0.2.10", 10000, 8080, 1, 0, "S", 0, 100.0 + i / 1000) for i in range(5)
    ]
    packet_timeline({"in": segs}, client, 100.0, {"app gives up": 109.0}, tmp_path / "t.png", "t")
    ax = drawn[0].axes[0]
    assert ax.get_xlim()[1] > 9.0
    mark = [t for t in ax.texts if "gives up" in t.get_text()][0]
    assert mark.get_rotation() == 90 and mark.get_horizontalalignment() == "right"
    assert len([t for t in ax.texts if t.get_text().startswith("S")]) == 1  # one label, not five
    plt.close(drawn[0])


def test_each_remaining_timeout_panel_has_its_own_scale_and_says_what_0_means(tmp_path: Path, monkeypatch):
    drawn: list = []
    monkeypatch.setattr("lab.plot.sessions.save", lambda fig, path, rect=None: drawn.append(fig) or path)
    series = {"20 s service": [(0.0, 19), (1.0, 18)], "2 s default": [(0.0, 1), (1.0, 0), (2.0, None)]}
    session_timeline(series, 2.0, tmp_path / "s.png", "t")
    fig = drawn[0]
    tops = [ax.get_ylim()[1] for ax in fig.axes]
    assert tops[0] > 19 and tops[1] < 2
    assert any("0 s left" in t.get_text() for t in fig.texts)
    plt.close(fig)
