"""Bounded waits on events: every wait names what it waited for and gives up with LabTimeout.

Every wait also runs the *watches* (`watch`): checks that raise when something the wait
depends on is gone, such as a lab's dead daemon during a case (`lab.net.Lab.begin_case`),
so a case stops at its next wait instead of waiting out its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lab.errors import LabTimeout

T = TypeVar("T")
R = TypeVar("R")

WATCH_EVERY = 0.1  # s: how often a wait runs the watches (each reads every watched process)
_watches: list[Callable[[], None]] = []


def watch(check: Callable[[], None]) -> None:
    """Run `check` in every wait from now on (it raises to end the wait)."""
    if check not in _watches:
        _watches.append(check)


def unwatch(check: Callable[[], None]) -> None:
    """No longer run `check` in waits (nothing when it was not watched)."""
    if check in _watches:
        _watches.remove(check)


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; return that. Raise LabTimeout after
    `timeout` seconds, naming `what` was awaited; the watches run first, then every
    WATCH_EVERY seconds."""
    deadline = time.monotonic() + timeout
    watched = 0.0
    while True:
        if _watches and time.monotonic() >= watched:
            watched = time.monotonic() + WATCH_EVERY
            for guard in list(_watches):
                guard()
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
