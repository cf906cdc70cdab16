"""Bounded waits on events: every wait names what it waited for and gives up with LabTimeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lab.errors import LabTimeout

T = TypeVar("T")
R = TypeVar("R")


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; return that. Raise LabTimeout after
    `timeout` seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabTimeout(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def at_once(jobs: list[Callable[[], R]]) -> list[R]:
    """Run `jobs` at the same time (threads: they wait on lab processes), their results in
    order; the first job's exception (in order) is raised once every job has ended."""
    if len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]
