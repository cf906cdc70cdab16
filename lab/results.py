"""Run outputs: `results/<run>/<case>/` with figures (JSON), plots (PNG), pcaps and logs.

Runs are named by their start time and `results/latest` points at the newest run that wrote
its report, like pytest's tmp_path. What is kept (see `settle` and `prune`): a run that ran
no case leaves nothing; after a run that ran a case, the newest `KEEP_RUNS` runs that ran a
case are kept, and an older one goes unless `latest` points at it or a case of it failed.
A repeated run (`run --repeat`, lab.series) is one run folder holding a run folder per
repetition (`rep-1`, `rep-2`...): kept or pruned as one run, failed when a case of any
repetition failed. Other folders (a `topo` session's logs, a characterization) are removed
only when asked (`sessionlab clean --runs`); a folder not named like a run is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lab.errors import ConfigError, LabError

log = logging.getLogger(__name__)

KEEP_RUNS = 10
TOPOLOGY_DATA = "topology.json"  # in a module's lab folder: Lab.describe(), written at its start
TOPOLOGY_DRAWING = "topology.png"  # beside it: drawn from it by the report
CASE_FILE = "case.json"  # in a case's folder: the case as data
SUMMARY_FILE = "summary.json"  # in a run folder: every case, written with the report
RUN_FILE = "run.json"  # in a run folder: what ran (command line, start, commit)
COLLECTION_ERRORS = "collection-errors.txt"  # in a run folder: why a suite could not be collected
FAILED_VERDICTS = ("failed", "error")
_HELD = ".running"  # in a run folder: locked by the process of that run (see `in_progress`)
_held: dict[Path, int] = {}  # this process's runs: their lock files' descriptors
_RUN_NAME = re.compile(r"^\d{8}-\d{6}(-[0-9A-Za-z_.-]+)?$")  # -2, or -<host> when fetched
_REPETITION = re.compile(r"^rep-([1-9][0-9]*)$")  # a repeated run's repetition (lab.series)


def check_results_root(root: Path) -> None:
    """Refuse, in one line, a results folder that is not a folder or cannot be made."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--results {root}: not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--results {root}: cannot make the folder ({exc.strerror})") from None


def new_run(root: Path) -> Path:
    """A fresh run folder under `root`, named by the time, held (`in_progress`) while this
    process lives; nothing is removed here (see `settle`: a run's folder is kept or
    removed by what the run did)."""
    check_results_root(root)
    base = time.strftime("%Y%m%d-%H%M%S")
    path, n = root / base, 1
    while True:
        try:
            path.mkdir()
            break
        except FileExistsError:  # another run started in the same second
            path, n = root / f"{base}-{n}", n + 1
    # An flock the kernel drops when this process ends, however it ends: pruning by another
    # process leaves a running run's folder alone. The descriptor is not inherited (PEP 446).
    fd = os.open(path / _HELD, os.O_CREAT | os.O_WRONLY, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held[path] = fd
    return path


def in_progress(run: Path) -> bool:
    """Whether a live process holds the run folder (made by `new_run` and not yet ended)."""
    if run in _held:
        return True
    try:
        fd = os.open(run / _HELD, os.O_WRONLY)
    except OSError:
        return False  # no lock file: a run from before, or not ours
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock taken here
    return False


def run_folders(root: Path) -> list[Path]:
    """The run folders under `root`, oldest first: real folders named like a run."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and _RUN_NAME.match(p.name))


def repetition_folder(run: Path, number: int) -> Path:
    """The folder of a repeated run's repetition `number` (from 1): `<run>/rep-<number>`."""
    return run / f"rep-{number}"


def repetition_number(folder: Path) -> int | None:
    """Which repetition a folder holds (`rep-2` -> 2); None for any other folder."""
    found = _REPETITION.match(folder.name)
    return int(found.group(1)) if found else None


def verdicts(run: Path) -> list[str]:
    """The verdicts of the cases a run folder holds: from its summary.json, or (a run killed
    before its report) from its cases' case.json, a repeated run's repetitions' too; empty
    when it ran no case."""
    summary = run / SUMMARY_FILE
    try:
        if summary.is_file():
            return [str(case.get("verdict", "")) for case in json.loads(summary.read_text())]
        files = [*run.glob(f"*/{CASE_FILE}"), *run.glob(f"rep-*/*/{CASE_FILE}")]
        return [str(json.loads(p.read_text()).get("verdict", "")) for p in sorted(files)]
    except (OSError, ValueError, AttributeError):
        return ["unreadable"]  # kept as if a case failed: never removed on a guess


def ran_a_case(run: Path) -> bool:
    """Whether the run folder holds a case (a summary or a case.json)."""
    return bool(verdicts(run))


def is_case_run(run: Path) -> bool:
    """A folder `sessionlab run` made (its run.json) or one holding cases: what automatic
    pruning counts; a `topo` or `characterize` folder is not one."""
    return (run / RUN_FILE).exists() or ran_a_case(run)


def failed(run: Path) -> bool:
    """Whether a case of the run failed or errored (such runs are kept unless asked)."""
    return any(v in (*FAILED_VERDICTS, "unreadable") for v in verdicts(run))


def latest_run(root: Path) -> Path | None:
    """The run folder `root/latest` points at, if any."""
    latest = root / "latest"
    return latest.resolve() if latest.is_symlink() else None


def doomed(root: Path, keep: int, *, with_failed: bool = False, every_kind: bool = False) -> list[Path]:
    """The run folders pruning removes: all but the newest `keep` runs (`is_case_run`; of
    every run folder with `every_kind`), never the one `latest` points at, and a run with a
    failed case only `with_failed`."""
    folders = [p for p in run_folders(root) if every_kind or is_case_run(p)]
    pinned = latest_run(root)
    old = folders[: max(len(folders) - keep, 0)]
    return [p for p in old if p.resolve() != pinned and (with_failed or not failed(p)) and not in_progress(p)]


def prune(root: Path, keep: int = KEEP_RUNS) -> list[Path]:
    """After a run that ran a case: remove the older runs beyond the newest `keep` (see
    `doomed`: never `latest`'s, nor one with a failed case); returns what was removed."""
    gone = doomed(root, keep)
    for path in gone:
        log.debug("pruning run folder %s", path)
        shutil.rmtree(path, ignore_errors=True)
    return gone


def settle(run: Path, ran: bool | None = None, keep: int = KEEP_RUNS) -> None:
    """At the end of a run: a run that ran no case (`ran`, else what its folder holds)
    leaves nothing, unless it explains why a suite could not be collected (the message
    names that file); one that ran a case prunes the older runs."""
    fd = _held.pop(run, None)
    if fd is not None:
        os.close(fd)  # this run is over
    if ran or (ran is None and ran_a_case(run)):
        prune(run.parent, keep)
    elif not (run / COLLECTION_ERRORS).exists():
        log.debug("run %s ran no case: its folder goes", run)
        shutil.rmtree(run, ignore_errors=True)


def git_state(root: Path) -> tuple[str | None, bool]:
    """The checkout's commit (git HEAD) and whether its files differ from it; (None, False)
    when it is not a git checkout."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None, False
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    if head.returncode != 0:
        return None, False
    return head.stdout.strip(), status.returncode == 0 and bool(status.stdout.strip())


def write_run_info(run: Path, argv: list[str], checkout: Path, **more: Any) -> Path:
    """`run.json`: the command line (shell-quoted), the start (local time with its UTC
    offset) and the checkout's commit, for the report to say what ran; `more` beside them
    (a repetition's number and the series' cap)."""
    commit, dirty = git_state(checkout)
    info = {
        "command": shlex.join(["sessionlab", *argv]),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "dirty": dirty,
        **more,
    }
    path = run / RUN_FILE
    path.write_text(json.dumps(info, indent=2) + "\n")
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
            # The case's own files, then the run's (its lab's logs beside the case folder)
            for was, now in ((old, path), (old.parent, path.parent)):
                with contextlib.suppress(ValueError):
                    return now / Path(file).relative_to(was)
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
