"""The noisy-neighbour series' pure parts: a loop's CPU seconds from /proc, and what a run's
cases say about margins and failures (testcases/noisy_series.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from testcases.noisy_series import Neighbour, cpu_seconds, verdict

MARGINS = "client timeout margins"


def _case(name: str, verdict: str, margin: float | None, message: str = "") -> dict:
    figures = {MARGINS: [{"client": "c1", "margin (s)": margin}]} if margin is not None else {}
    return {"name": name, "title": name, "verdict": verdict, "figures": figures, "message": message}


def test_cpu_seconds_of_this_process_grow_with_work():
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert cpu_seconds(os.getpid()) >= before


def test_a_plain_run_reads_as_one_repetition_with_failures_and_small_margins(tmp_path: Path):
    cases = [
        _case("test_a", "passed", 2.0),
        _case("test_b", "passed", 0.3),
        _case("test_c", "failed", 1.0, "timed out waiting for the echo"),
        _case("test_d", "passed", None),
    ]
    (tmp_path / "summary.json").write_text(json.dumps(cases))
    found = verdict(tmp_path, Neighbour(1, wall_s=100.0, cpu_s=(93.0,)))
    assert found["neighbour"]["cores held"] == 0.93
    assert found["cases"] == 4 and found["flaky"] == []
    assert found["failed"] == {"test_c": "repetition 1: timed out waiting for the echo"}
    assert found["margins under 0.5 s"] == {"test_b": 0.3}
    assert found["smallest margin (s)"] == 0.3
