"""The HTML report: figures read as words and tables (never JSON or Python literals), the
top says what ran and why each failed case failed, and failures can be shown alone."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from lab.report_values import render as _value


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
    assert _value([1, 2]) == "1, 2"


def test_literals_read_as_words():
    assert _value(["ESTAB"]) == "ESTAB"
    assert _value(None) == "\u2014"
    assert _value({}) == "none" and _value([]) == "none"
    assert _value(True) == "yes" and _value(False) == "no"
    assert _value({"server": ["ESTAB"], "client": []}) == (
        "<ul class='figure'><li>server: ESTAB</li><li>client: none</li></ul>"
    )
    nested = _value([[1, 2], {"a": None}])
    assert (
        nested == "<ol class='figure'><li>1, 2</li><li><ul class='figure'><li>a: \u2014</li></ul></li></ol>"
    )
    assert _value({"x": {"ok": True, "ports": [1, 2]}}) == (
        "<table class='figure'><tr><th></th><th>ok</th><th>ports</th></tr>"
        "<tr><th>x</th><td>yes</td><td>1, 2</td></tr></table>"
    )


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


class _Cells(HTMLParser):
    """The text of every table cell and list item of a page (an inner one apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.open: list[int] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "li"):
            self.cells.append("")
            self.open.append(len(self.cells) - 1)

    def handle_endtag(self, tag):
        if tag in ("td", "li") and self.open:
            self.open.pop()

    def handle_data(self, data):
        if self.open:
            self.cells[self.open[-1]] += data


# what a JSON or Python literal looks like in a cell: ["x"], [], {}, {"k", None, True, False
LITERAL = re.compile(r"""\[\s*["']|\[\]|\{\}|\{\s*["']|\bNone\b|\bTrue\b|\bFalse\b""")
# every figure of a whole default run (S1-S5, 101 cases, run 20261202-012319) and two S6
# runs, as their case.json files held them
RUN_FIGURES = Path(__file__).resolve().parent / "samples" / "run-figures.json"


def _literal_cells(text: str) -> list[str]:
    parser = _Cells()
    parser.feed(text)
    assert parser.cells
    return [cell for cell in parser.cells if LITERAL.search(cell)]


def test_a_synthetic_case_of_every_shape_has_no_literal_cell(tmp_path):
    from lab.report import write_report

    run = tmp_path / "20261129-010203"
    run.mkdir()
    case = _case(run)
    for name, value in {
        "states": {"idle 1s": {"server": ["ESTAB"], "client": []}},
        "nothing": None,
        "empty": {},
        "flags": [True, False],
        "rows": [{"port": 1, "seen": None}, {"port": 2, "extra": {"a": [1, [2, 3]]}}],
    }.items():
        case.figure(name, value)
    assert _literal_cells(write_report(run, [case]).read_text()) == []


def test_every_figure_of_whole_runs_reads_without_literals(tmp_path):
    """Every figure of a whole default run (S1-S5, 101 cases) and two S6 runs, as figures
    of cases of a report written here."""
    from lab.report import write_report
    from lab.results import Case

    figures = json.loads(RUN_FIGURES.read_text())
    run = tmp_path / "20261202-012319"
    run.mkdir()
    cases = [Case(name=name, path=run / name, figures=f, verdict="passed") for name, f in figures.items()]
    text = write_report(run, cases).read_text()
    assert len(cases) == 110
    assert _literal_cells(text) == []


def test_the_top_says_what_ran_and_why_each_failure_failed(tmp_path):
    from lab.report import write_report

    run = tmp_path / "20261129-010203"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps(
            {
                "command": "sessionlab run s1",
                "started": "2026-11-29T01:02:03+01:00",
                "commit": "abc1234",
                "dirty": True,
            }
        )
    )
    ok = _case(run)
    bad = _case(run, name="test_s9_demo.test_two", verdict="failed")
    bad.message = "AssertionError: idle 6s: the client hung\nassert 'hung' == 'delivered'"
    text = write_report(run, [ok, bad]).read_text()
    assert "<code>sessionlab run s1</code>" in text
    assert "abc1234 with uncommitted changes" in text
    assert "2026-11-29 01:02:03 +0100" in text
    assert "CPUs" in text and "kernel" in text and "ended (report written)" in text
    assert "<td class='reason'>idle 6s: the client hung</td>" in text
    assert "<tr class='ok'>" in text and "<tr class='bad'>" in text
    assert "id='only-failed'" in text and "#only-failed:checked ~ table.summary tr.ok" in text
    assert "<section class='case bad'>" in text


def test_without_run_json_the_start_comes_from_the_folder_name(tmp_path):
    from lab.report import run_facts

    facts = run_facts(tmp_path / "20261129-010203")
    assert facts["started"].startswith("2026-11-29 01:02:03 ")
    assert facts["command"].startswith("unknown")
    assert run_facts(tmp_path / "mine")["started"] == "unknown"


def test_a_copied_run_s_case_finds_its_lab_s_files_where_the_run_is_now(tmp_path):
    """A case loaded from a run moved elsewhere (copied, fetched from a host) names its own
    files and its lab's (a ruleset in `<module>-lab/`) in the new place."""
    from lab.results import Case

    old = tmp_path / "old" / "20261129-010203"
    case = Case(name="test_s9_demo.test_one", path=old / "test_s9_demo.test_one", verdict="passed")
    case.keep(case.path / "capture.pcap", "a capture")
    case.keep(old / "test_s9_demo-lab" / "fw-ruleset-1.nft", "a ruleset")
    case.keep(tmp_path / "elsewhere.txt", "a file outside the run")
    case.save()
    new = tmp_path / "new" / old.name
    new.parent.mkdir()
    old.rename(new)
    moved = Case.load(new / case.name)
    assert [p for _, p in moved.evidence] == [
        new / case.name / "capture.pcap",
        new / "test_s9_demo-lab" / "fw-ruleset-1.nft",
        tmp_path / "elsewhere.txt",
    ]
