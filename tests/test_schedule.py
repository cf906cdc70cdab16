"""lab.schedule: the longest scopes first, each scope's cases together and in order; and
how many labs `sessionlab run` puts side by side unless told."""

import json
from pathlib import Path

from lab.schedule import (
    UNKNOWN_CASE_SECONDS,
    durations_from_cases,
    expected_seconds,
    longest_first,
    module_seconds,
    spread_modules,
)


def scope(item: str) -> str:
    return item.split("::")[0]


def case(item: str) -> str:
    return item.replace("::", ".")


def test_longest_scopes_first_cases_in_order():
    items = ["a::1", "a::2", "b::1", "c::1", "c::2", "d::1"]
    seconds = {"a.1": 5, "a.2": 5, "b.1": 200, "c.1": 40, "c.2": 50}  # d.1: unknown
    assert longest_first(items, scope, case, seconds) == ["b::1", "c::1", "c::2", "a::1", "a::2", "d::1"]
    assert UNKNOWN_CASE_SECONDS == 2.0


def test_ties_keep_the_collected_order():
    items = ["x::1", "y::1", "x::2"]
    assert longest_first(items, lambda i: i, case, {}) == ["x::1", "y::1", "x::2"]
    assert longest_first(items, scope, case, {"x.1": 1, "x.2": 1, "y.1": 2}) == ["x::1", "x::2", "y::1"]


def test_durations_file(tmp_path: Path):
    path = tmp_path / "durations.json"
    assert expected_seconds(path) == {}
    path.write_text("not json")
    assert expected_seconds(path) == {}
    cases = durations_from_cases([("a.x", 1.04), ("b.y", 5.0)])
    assert list(cases.items()) == [("b.y", 5.0), ("a.x", 1.0)]
    path.write_text(json.dumps({"cases": cases}))
    assert expected_seconds(path) == {"b.y": 5.0, "a.x": 1.0}


def test_the_checked_in_durations_name_real_modules():
    root = Path(__file__).resolve().parent.parent
    names = expected_seconds()
    assert names and all((root / "testcases" / f"{name.split('.')[0]}.py").exists() for name in names)
    modules = module_seconds()
    assert modules and all((root / module).exists() for module in modules)
    # every unit-test module is named: one left out would count 2 s a case and go first
    assert {f"tests/{p.name}" for p in (root / "tests").glob("test_*.py")} <= set(modules)


def test_a_modules_seconds_spread_over_its_cases(tmp_path: Path):
    items = ["u::1", "u::2", "u::3", "u::4", "lab::1", "w::1"]
    modules = {"u": 1.6, "w": 0.1}
    seconds = spread_modules(items, scope, case, modules)
    assert seconds == {"u.1": 0.4, "u.2": 0.4, "u.3": 0.4, "u.4": 0.4, "w.1": 0.1}
    # the lab module (unknown, one case: 2 s) now goes before the unit tests' 4 cases
    assert longest_first(items, scope, case, seconds) == ["lab::1", "u::1", "u::2", "u::3", "u::4", "w::1"]
    assert longest_first(items, scope, case, {})[0] == "u::1"  # 8 s as unknown cases
    path = tmp_path / "durations.json"
    assert module_seconds(path) == {}
    path.write_text(json.dumps({"cases": {}, "modules": modules}))
    assert module_seconds(path) == modules


def test_labs_side_by_side_by_default_where_they_can_be():
    from lab.cli_run import default_workers

    two = ["testcases/test_s1_keepalive.py", "testcases/test_s2_sync.py::test_sync_defer_race"]
    assert default_workers(two, False, cpus=2) == 4
    assert default_workers(two, False, cpus=1) == 1  # one CPU: one lab at a time
    assert default_workers(two, True, cpus=4) == 1  # --pause-on-fail: the prompt is here
    one = ["testcases/test_s2_sync.py::test_sync_race", "testcases/test_s2_sync.py::test_sync_defer_race"]
    assert default_workers(one, False, cpus=8) == 1  # one module: xdist would only cost
