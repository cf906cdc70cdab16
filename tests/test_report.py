"""Figures in the HTML report read as tables, not as raw JSON."""

import json

from lab.report import _value


def test_rows_of_the_same_kind_are_a_table():
    text = _value(
        {"ACK scan": {"stateful": "dropped", "stateless": "passed"}, "FIN scan": {"stateful": "dropped"}}
    )
    assert text.startswith("<table") and "<th>stateless</th>" in text and "<th>FIN scan</th>" in text
    assert "{" not in text
    rows = _value([{"client port": 12000, "end": "FIN"}, {"client port": 12001, "end": "RST"}])
    assert "<th>client port</th>" in rows and "<td>RST</td>" in rows


def test_flat_mappings_and_scalars():
    assert (
        _value({"stateful": 6, "stateless": 5})
        == "<ul class='figure'><li>stateful: 6</li><li>stateless: 5</li></ul>"
    )
    assert _value(0.123456) == "0.123"
    assert _value("<b>") == "&lt;b&gt;"
    assert _value([1, 2]) == "[1, 2]"


def _case(tmp_path, name="test_s9_demo.test_one", verdict="passed"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.results import Case

    case = Case(name=name, path=tmp_path / name, title="a demo case", verdict=verdict)
    case.path.mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(case.plot_path("line", "a line"))
    plt.close(fig)
    (case.path / "capture.pcap").write_bytes(b"")
    case.keep(case.path / "capture.pcap", "a capture")
    case.figure("rate", 12)
    return case


def test_report_is_one_self_contained_file(tmp_path):
    from lab.report import write_report

    run = tmp_path / "20261129-010203"
    run.mkdir()
    path = write_report(run, [_case(run)])
    text = path.read_text()
    assert "data:image/png;base64," in text
    assert "<img src='test_s9" not in text  # no plot outside the page
    assert "href='test_s9_demo.test_one/capture.pcap'" in text  # captures stay linked
    assert "<h2 id='test_s9_demo'>" in text
    assert (run / "summary.json").exists()


def test_latest_points_at_the_newest_run_with_a_report(tmp_path):
    from lab.report import write_report
    from lab.results import new_run

    first = new_run(tmp_path)
    write_report(first, [_case(first)])
    assert (tmp_path / "latest").resolve() == first.resolve()
    killed = new_run(tmp_path)  # a run killed before its report
    assert killed != first
    assert (tmp_path / "latest").resolve() == first.resolve()
    third = new_run(tmp_path)
    write_report(third, [_case(third)])
    assert (tmp_path / "latest").resolve() == third.resolve()


def test_the_report_draws_each_lab_from_the_description_its_lab_wrote(tmp_path):
    from lab.report import write_report

    run = tmp_path / "20261129-010203"
    run.mkdir()
    case = _case(run)
    lab_dir = run / "test_s9_demo-lab"
    lab_dir.mkdir()
    described = {
        "title": "topology (Demo)",
        "nodes": [
            {"name": "h1", "kind": "host", "role": None, "addresses": ["10.0.0.1/24"]},
            {"name": "fw", "kind": "host", "role": "firewall", "addresses": ["10.0.0.254/24"]},
            {"name": "s1", "kind": "switch", "role": None, "addresses": []},
        ],
        "links": [{"a": "h1", "b": "s1", "impaired": False}, {"a": "fw", "b": "s1", "impaired": True}],
    }
    (lab_dir / "topology.json").write_text(json.dumps(described))
    text = write_report(run, [case]).read_text()
    assert (lab_dir / "topology.png").stat().st_size > 0
    assert (
        "<figcaption>test_s9_demo: the lab&#x27;s topology, device roles and addresses</figcaption>" in text
    )
