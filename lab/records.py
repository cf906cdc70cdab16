"""What a lab creates outside its own namespaces, written down before (or, for a process,
the moment) it is created, so that `sessionlab clean` can remove what a run killed with
SIGKILL left behind, and only that.

One JSON file per lab, `/run/sessionlab/records/<tag>.json`: the owner (PID and start time),
the OVS bridges, the prefix of its root-namespace interfaces, throwaway namespaces and the
processes it started (PID and start time, so a reused PID is never signalled), and the
label of whoever started the run (LABEL_ENV in its environment, inherited by its workers:
a test that runs `sessionlab` tells its own labs from other runs' on the same machine). A
lab that closes normally removes its own file; a file whose owner is gone is what `clean`
reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.ovs import remove_bridges
from lab.procs import RUNTIME_ROOT, host_run

log = logging.getLogger(__name__)

RECORDS = RUNTIME_ROOT / "records"
LABEL_ENV = "SESSIONLAB_LABEL"  # a run's label, kept in its labs' records (empty: none)
LAB_MADE = re.compile(r"sl[0-9a-f]{4}")  # a lab's tag (lab.net): what its bridges and interfaces start with
_WRITING = threading.RLock()  # a record's changes and writes, from any thread of the lab


def _stat(pid: int) -> list[str] | None:
    """A process's /proc/<pid>/stat fields from the state on (field 3), or None when there is
    no such process. The command name (field 2) may hold spaces and parentheses: fields
    count from its end."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22), or None
    when there is no such process: with the PID, what names one process for good."""
    fields = _stat(pid)
    return int(fields[19]) if fields is not None else None


def root_links() -> list[str]:
    """The root namespace's interface names (`ip -o link show`; a veth's without its @peer)."""
    names = []
    for line in host_run(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return names


def alive(pid: int, started: int | None) -> bool:
    """Whether the process `pid` that started at `started` still runs. A zombie (ended, its
    parent has not reaped it) does not: it holds nothing, and a killed run's processes
    can stay zombies for a while where the machine's init reaps late; counted alive, its
    lab's record was left alone by `clean` as if its run still went on (seen at 812dbed)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == started


@dataclass
class Record:
    """The record of one lab (see the module docstring)."""

    tag: str
    folder: Path = RECORDS
    owner: int = field(default_factory=os.getpid)
    owner_start: int | None = None
    bridges: list[str] = field(default_factory=list)
    link_prefix: str | None = None
    netns: list[str] = field(default_factory=list)
    processes: dict[int, dict[str, Any]] = field(default_factory=dict)
    label: str = field(default_factory=lambda: os.environ.get(LABEL_ENV, ""))

    def __post_init__(self) -> None:
        if self.owner_start is None:
            self.owner_start = start_time(self.owner)

    @property
    def path(self) -> Path:
        return self.folder / f"{self.tag}.json"

    # --- writing -----------------------------------------------------------------------
    def _write(self) -> None:
        # Threads of one lab write it (a command run while a sampler's runs): one at a time.
        with _WRITING:
            self.folder.mkdir(parents=True, exist_ok=True)
            fresh = self.path.with_suffix(".tmp")
            fresh.write_text(json.dumps(self.to_dict()))
            os.replace(fresh, self.path)

    def add_bridges(self, names: list[str]) -> None:
        self.bridges += [n for n in names if n not in self.bridges]
        self._write()

    def set_link_prefix(self, prefix: str) -> None:
        self.link_prefix = prefix
        self._write()

    def add_netns(self, name: str) -> None:
        self.netns.append(name)
        self._write()

    def drop_netns(self, name: str) -> None:
        self.netns = [n for n in self.netns if n != name]
        self._write()

    def add_process(self, pid: int, name: str) -> None:
        with _WRITING:
            self.processes[pid] = {"name": name, "start": start_time(pid)}
            self._write()

    def add_processes(self, named: dict[int, str]) -> None:
        with _WRITING:
            for pid, name in named.items():
                self.processes[pid] = {"name": name, "start": start_time(pid)}
            self._write()

    def drop_process(self, pid: int) -> None:
        with _WRITING:
            if self.processes.pop(pid, None) is not None:
                self._write()

    def close(self) -> None:
        """The lab removed everything itself: the record goes."""
        self.path.unlink(missing_ok=True)

    def to_dict(self) -> dict[str, Any]:
        """The record as its file holds it: every field but the folder it lies in (JSON
        writes the processes' PIDs as strings)."""
        data = asdict(self)
        del data["folder"]
        return data

    @classmethod
    def load(cls, path: Path) -> Record:
        """The record in `path` (a missing field or one of the wrong kind: KeyError, TypeError
        or ValueError; a record written before labels has none)."""
        data = json.loads(path.read_text())
        kept = {f.name: data[f.name] for f in fields(cls) if f.name not in ("folder", "label")}
        kept["label"] = str(data.get("label", ""))
        kept["owner"] = int(kept["owner"])
        kept["processes"] = {int(pid): p for pid, p in kept["processes"].items()}
        return cls(folder=path.parent, **kept)

    # --- cleaning ----------------------------------------------------------------------
    def orphaned(self) -> bool:
        """Whether the lab's owner is gone (killed) and nothing else will remove it."""
        return not alive(self.owner, self.owner_start)

    def leftovers(self) -> list[tuple[str, str]]:
        """What of the record is still there: (kind, name) pairs."""
        found: list[tuple[str, str]] = []
        for pid, proc in sorted(self.processes.items()):
            if alive(pid, proc["start"]):
                found.append(("process", f"{pid} {proc['name']}"))
        for pid, started in sorted(self._descendants().items()):
            if alive(pid, started):
                found.append(("process", f"{pid} {_command(pid)} (started by {self._parent_name(pid)})"))
        existing = set(host_run(["ovs-vsctl", "--timeout=5", "list-br"], check=False).split())
        found += [("bridge", b) for b in self.bridges if b in existing]
        found += [("interface", i) for i in self._interfaces()]
        names = {
            line.split()[0] for line in host_run(["ip", "netns", "list"], check=False).splitlines() if line
        }
        found += [("namespace", n) for n in self.netns if n in names]
        if (RUNTIME_ROOT / self.tag).exists():
            found.append(("runtime directory", str(RUNTIME_ROOT / self.tag)))
        return found

    def _interfaces(self) -> list[str]:
        if not self.link_prefix:
            return []
        return [name for name in root_links() if name.startswith(self.link_prefix)]

    def _descendants(self) -> dict[int, int | None]:
        """Processes started under the recorded ones that are not recorded themselves (a
        command a node's shell runs): PID -> start time. A node's shell killed alone would
        leave them running in the lab's namespaces, reparented away from it."""
        recorded = {pid for pid, p in self.processes.items() if alive(pid, p["start"])}
        return {pid: start_time(pid) for pid in descendants(recorded) if pid not in self.processes}

    def _parent_name(self, pid: int) -> str:
        for ancestor in _ancestors(pid):
            if ancestor in self.processes:
                return str(self.processes[ancestor]["name"])
        return "a recorded process"

    def remove(self) -> list[tuple[str, str]]:
        """Remove what is left (processes by PID and start time, and what they started,
        then bridges, interfaces, namespaces, the runtime directory) and the record; what
        was removed."""
        removed = self.leftovers()
        doomed = {pid: p["start"] for pid, p in self.processes.items() if alive(pid, p["start"])}
        doomed |= self._descendants()  # read before their parents end and they move to init
        for pid, started in doomed.items():
            if alive(pid, started):
                _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(alive(p, s) for p, s in doomed.items()):
            time.sleep(0.05)
        for pid, started in doomed.items():
            if alive(pid, started):
                _signal(pid, signal.SIGKILL)
        remove_bridges(self.bridges)
        for name in self._interfaces():
            host_run(["ip", "link", "del", name], check=False)
        for ns in self.netns:
            host_run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(RUNTIME_ROOT / self.tag, ignore_errors=True)
        self.close()
        return removed


def _parents() -> dict[int, int]:
    """Every process's parent (PID -> PPID), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended while read
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parents


def descendants(pids: set[int]) -> set[int]:
    """Every process under `pids` (children, theirs, ...), not `pids` themselves."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child not in pids:
                found.add(child)
                todo.append(child)
    return found


def _ancestors(pid: int) -> list[int]:
    parents, chain = _parents(), []
    while pid in parents and parents[pid] not in chain and parents[pid] > 1:
        pid = parents[pid]
        chain.append(pid)
    return chain


def command(pid: int) -> str:
    """A process's command line, its arguments joined by spaces ("" once it has gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _command(pid: int) -> str:
    return command(pid)[:60] or "?"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def records(folder: Path = RECORDS) -> list[Record]:
    """Every lab record on this machine (unreadable ones are skipped, with a warning)."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            found.append(Record.load(path))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable lab record %s: %s", path, exc)
    return found


def other_labs(folder: Path = RECORDS) -> list[str]:
    """Labs of other processes running on this machine now (their tags): what shares the
    machine-wide counters (the kernel's slab caches) with this one."""
    return [r.tag for r in records(folder) if r.owner != os.getpid() and not r.orphaned()]
