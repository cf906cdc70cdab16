"""Bounded waits on events: every wait names what it waited for and gives up with LabTimeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from lab.errors import LabTimeout

T = TypeVar("T")


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
