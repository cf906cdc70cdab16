"""Run outputs: `results/<run>/<case>/` with figures (JSON), plots (PNG), pcaps and logs.

Runs are named by their start time; the newest few are kept and `results/latest` points at
the newest run that wrote its report, like pytest's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lab.errors import LabError

KEEP_RUNS = 10
TOPOLOGY_DATA = "topology.json"  # in a module's lab folder: Lab.describe(), written at its start
TOPOLOGY_DRAWING = "topology.png"  # beside it: drawn from it by the report
CASE_FILE = "case.json"  # in a case's folder: the case as data
_RUN_NAME = re.compile(r"^\d{8}-\d{6}(-[0-9A-Za-z_.-]+)?$")  # -2, or -<host> when fetched


def new_run(root: Path, keep: int = KEEP_RUNS) -> Path:
    """A fresh run folder under `root`; older runs beyond `keep` are removed."""
    root.mkdir(parents=True, exist_ok=True)
    base = time.strftime("%Y%m%d-%H%M%S")
    path, n = root / base, 1
    while path.exists():
        path, n = root / f"{base}-{n}", n + 1
    path.mkdir()
    runs = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and _RUN_NAME.match(p.name))
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def mark_latest(run: Path) -> None:
    """Point `latest` beside `run` at it, atomically (a new link renamed over the old)."""
    latest = run.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return  # someone's own folder of that name: not ours to replace
    fresh = run.parent / f".latest-{os.getpid()}"
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(run.name)
    os.replace(fresh, latest)


class Measured(Protocol):
    """What a client load returns (`lab.traffic.Records`): records with the timeout margins
    of the loads that made them."""

    margins: list[dict[str, Any]]


M = TypeVar("M", bound=Measured)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


@dataclass
class Case:
    """One test case's output folder and what it records for the report."""

    name: str
    path: Path
    title: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    plots: list[tuple[str, Path]] = field(default_factory=list)
    evidence: list[tuple[str, Path]] = field(default_factory=list)
    ports: range = range(0)  # the TCP ports this case's clients use (see lab.isolation)
    verdict: str = "not run"
    message: str = ""
    duration: float = 0.0
    taken: int = 0  # ports of the block handed out so far
    links: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # impaired links, as run
    runner: dict[str, str] = field(default_factory=dict)  # where it ran: xdist worker, SSH connection
    # seconds of pytest's setup (a module's first case: its lab's start), call, teardown
    phases: dict[str, float] = field(default_factory=dict)
    # client loads' timeout margins (lab.traffic.timeout_margin), noted by the case itself;
    # the plugin writes them as a figure and fails the case when one is thin
    margins: list[dict[str, Any]] = field(default_factory=list)

    def note_load(self, first: M, *more: Measured) -> M:
        """Note the timeout margins of client loads' records (`lab.traffic.Records`); the
        first records, so a case writes `records = case.note_load(run_http(...)["c1"])`."""
        loads: list[Measured] = [first, *more]
        for records in loads:
            self.margins.extend(records.margins)
        return first

    def take_ports(self, count: int) -> range:
        """The next `count` unused ports of this case's block (clients' source ports)."""
        if self.taken + count > len(self.ports):
            raise LabError(f"case {self.name} needs more than the {len(self.ports)} ports of its block")
        self.taken += count
        return self.ports[self.taken - count : self.taken]

    def take_port(self) -> int:
        """The next unused port of this case's block (for a client's source port)."""
        return self.take_ports(1)[0]

    def figure(self, name: str, value: Any) -> None:
        """Record a measured figure; saved to figures.json and shown in the report."""
        self.figures[name] = value
        self.save()

    def plot_path(self, name: str, caption: str) -> Path:
        """Where to draw a plot; it is listed in the report with its caption."""
        path = self.path / f"{name}.png"
        self.plots.append((caption, path))
        return path

    def keep(self, path: Path, what: str) -> Path:
        """List a file (capture, session table, log) as evidence of this case."""
        self.evidence.append((what, path))
        return path

    def save(self) -> None:
        """figures.json (what was measured) and case.json (the whole case, as the report
        reads it: a run spread over several workers is put together from these)."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "figures.json").write_text(json.dumps(self.figures, indent=2, default=str))
        (self.path / CASE_FILE).write_text(json.dumps(self.to_dict(), indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> Case:
        """A case from its folder's case.json; its files' paths moved to `path` (a case
        that ran on another host was fetched from another folder)."""
        data = json.loads((path / CASE_FILE).read_text())
        ports = data.get("ports")
        old = Path(data.get("path") or path)

        def here(file: str) -> Path:
            try:
                return path / Path(file).relative_to(old)
            except ValueError:
                return Path(file)

        return cls(
            name=data["name"],
            path=path,
            title=data["title"],
            figures=data["figures"],
            plots=[(c, here(p)) for c, p in data["plots"]],
            evidence=[(w, here(p)) for w, p in data["evidence"]],
            ports=range(ports[0], ports[1] + 1) if ports else range(0),
            verdict=data["verdict"],
            message=data["message"],
            duration=data["duration"],
            links=data.get("links", {}),
            runner=data.get("runner", {}),
            phases=data.get("phases", {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "title": self.title,
            "verdict": self.verdict,
            "message": self.message,
            "duration": round(self.duration, 2),
            "ports": [self.ports.start, self.ports.stop - 1] if self.ports else None,
            "figures": self.figures,
            "plots": [[c, str(p)] for c, p in self.plots],
            "evidence": [[w, str(p)] for w, p in self.evidence],
            "links": self.links,
            "runner": self.runner,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
        }
