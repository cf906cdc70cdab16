"""Figures in the HTML report read as tables, not as raw JSON."""

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
