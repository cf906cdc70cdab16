"""lab.schedule: the longest lab modules first, each module's cases together and in order."""

import json
from pathlib import Path

from lab.schedule import UNKNOWN_SECONDS, durations_from_cases, expected_seconds, longest_first


def test_longest_modules_first_cases_in_order():
    items = ["a.py::1", "a.py::2", "b.py::1", "c.py::1", "c.py::2", "d.py::1"]
    seconds = {"a.py": 10, "b.py": 200, "c.py": 90}  # d.py: unknown, one minute
    ordered = longest_first(items, lambda i: i.split("::")[0], seconds)
    assert ordered == ["b.py::1", "c.py::1", "c.py::2", "d.py::1", "a.py::1", "a.py::2"]
    assert UNKNOWN_SECONDS == 60


def test_ties_keep_the_collected_order():
    items = ["x.py::1", "y.py::1", "x.py::2"]
    assert longest_first(items, lambda i: i.split("::")[0], {}) == ["x.py::1", "x.py::2", "y.py::1"]


def test_durations_file(tmp_path: Path):
    path = tmp_path / "durations.json"
    assert expected_seconds(path) == {}
    path.write_text("not json")
    assert expected_seconds(path) == {}
    modules = durations_from_cases([("a.py", 1.04), ("b.py", 5.0), ("a.py", 2.0)])
    assert modules == {"b.py": 5.0, "a.py": 3.0}
    path.write_text(json.dumps({"modules": modules}))
    assert expected_seconds(path) == {"b.py": 5.0, "a.py": 3.0}


def test_the_checked_in_durations_name_real_modules():
    root = Path(__file__).resolve().parent.parent / "testcases"
    names = expected_seconds()
    assert names and all((root / name).exists() for name in names)


def test_labs_side_by_side_by_default_where_they_can_be():
    from lab.cli_run import default_workers

    two = ["testcases/test_s1_keepalive.py", "testcases/test_s2_sync.py::test_sync_defer_race"]
    assert default_workers(two, False, cpus=2) == 2
    assert default_workers(two, False, cpus=1) == 1  # one CPU: one lab at a time
    assert default_workers(two, True, cpus=4) == 1  # --pause-on-fail: the prompt is here
    one = ["testcases/test_s2_sync.py::test_sync_race", "testcases/test_s2_sync.py::test_sync_defer_race"]
    assert default_workers(one, False, cpus=8) == 1  # one module: xdist would only cost
