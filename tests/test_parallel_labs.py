"""testcases/parallel_labs.py without a lab: jobs run at once, results in order, the
first failure raised once all have ended."""

import threading
import time

import pytest

from lab.wait import at_once


def test_jobs_run_at_once_and_answer_in_order():
    started = threading.Barrier(3, timeout=5)  # each job waits for the other two: at once or never

    def job(n: int) -> int:
        started.wait()
        return n * 10

    assert at_once([lambda n=n: job(n) for n in range(3)]) == [0, 10, 20]


def test_the_first_failure_is_raised_after_every_job_ended():
    ended = []

    def slow() -> str:
        time.sleep(0.2)
        ended.append("slow")
        return "done"

    def fail() -> str:
        raise ValueError("the second job")

    with pytest.raises(ValueError, match="the second job"):
        at_once([slow, fail])
    assert ended == ["slow"]


def test_one_job_runs_here():
    assert at_once([threading.current_thread]) == [threading.current_thread()]
