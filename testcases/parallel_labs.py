"""More labs of a module's topology beside its own, so that variants which would share one
device's state (a firewall's session table, its ruleset) run at the same time, each in a
lab of its own, instead of one after another (issue 24: waiting for timeouts in turn).

`side_labs` builds them once for the module (next to the plugin's `lab`, in folders named
`<module>-lab-<n>`); `in_case` gives side labs to one case as the plugin gives the
module's lab to each case (lab/pytest_plugin.py, `_lab_case_hygiene`): its devices start
empty, what the case started there is stopped and its ports' sockets aborted at the end,
the logs kept in the case folder (named after the side), and a process that died unasked
fails the case. A case's evidence of a side lab goes into its own folder as usual, so the
plugin's isolation check covers it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab import topology
from lab.net import Lab
from lab.results import Case
from lab.wait import at_once

R = TypeVar("R")


@contextlib.contextmanager
def side_labs(name: str, params: dict[str, Any], folder: Path, count: int) -> Iterator[list[Lab]]:
    """`count` labs of the topology `name` (with `params`), built one after another and
    removed on exit (failed cases or not); lab n writes into `<folder>-<n>` (n from 2:
    the module's own lab is the first)."""
    with contextlib.ExitStack() as stack:
        labs = [
            stack.enter_context(Lab(topology.load(name, **params), Path(f"{folder}-{n}")))
            for n in range(2, count + 2)
        ]
        yield labs


@contextlib.contextmanager
def in_case(sides: dict[str, Lab], case: Case) -> Iterator[dict[str, Lab]]:
    """The side labs (label -> lab) as this case's for the block: their devices reset at
    the start; at the end, in every lab at once, the processes started in it stopped and
    the case's sockets aborted; their logs kept as `logs/<label>-<log>`; a process that
    ended unasked fails the case."""
    marks = {label: side.begin_case() for label, side in sides.items()}
    try:
        yield sides
    finally:
        dead = [(label, p) for label, side in sides.items() for p in side.crashed()]
        at_once([partial(side.end_case, marks[label], case.ports) for label, side in sides.items()])
        logs = case.path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for label, side in sides.items():
            for proc in side.procs[marks[label] :]:
                if proc.log_path.exists():
                    copy = logs / f"{label}-{proc.log_path.name}"
                    shutil.copyfile(proc.log_path, copy)
                    case.keep(copy, f"log: {proc.name} ({label})")
        if dead:
            lines = [f"{p.name} on {p.node} ({label}) exited {p.popen.returncode}" for label, p in dead]
            for _, p in dead:
                p.stopped = True  # reported once
            pytest.fail("lab process crashed: " + "; ".join(lines), pytrace=False)
