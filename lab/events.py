"""The one reader of the JSON-lines logs that lab apps, agents and the controller write
(the writing side is `lab.apps.events`: `emit` for events, `report` for result records).

Only whole lines count: a process still writing may have its last line half out, and a
line cut in two is no record. Lines that are not JSON objects (a traceback, a tool's
warning on the merged stderr) are skipped.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class Logged(Protocol):
    """What writes such a log: a `lab.procs.Proc`, or any source of its text so far."""

    def output(self) -> str: ...


def read_lines(text: str) -> list[str]:
    """The whole lines of `text`: the last one only if its newline is out too."""
    lines = text.splitlines()
    return lines if text.endswith("\n") else lines[:-1]


def read_json_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON object line of `text` (events and result records alike), in order."""
    return [json.loads(line) for line in read_lines(text) if line.startswith("{")]


def read_events(text: str) -> list[dict[str, Any]]:
    """The events of `text` (JSON lines with an "event" name), in order."""
    return [row for row in read_json_lines(text) if "event" in row]


def read_records(text: str) -> list[dict[str, Any]]:
    """The result records of `text` (JSON lines without an "event" name), in order."""
    return [row for row in read_json_lines(text) if "event" not in row]


def proc_events(proc: Logged, kind: str | None = None, peer: str | None = None) -> list[dict[str, Any]]:
    """The events a process logged, optionally only those of one `kind` ("listening",
    "request", ...) and of one client `peer` (address:port)."""
    return [
        e
        for e in read_events(proc.output())
        if (kind is None or e["event"] == kind) and (peer is None or e.get("peer") == peer)
    ]
