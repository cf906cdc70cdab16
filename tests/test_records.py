"""Lab records: what `sessionlab clean` reads after a run was killed. Real processes;
a record is only acted on when its owner is gone, and a process only when its PID still
names the process that was recorded (start time)."""

import os
import subprocess
import sys

from lab.records import Record, alive, records, start_time


def _dead_pid() -> tuple[int, int | None]:
    """A process that ran and ended: its PID and start time."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = start_time(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, started


def test_start_time_names_one_process():
    me = start_time(os.getpid())
    assert me is not None and alive(os.getpid(), me)
    assert not alive(os.getpid(), me + 1)  # same PID, other start: a reused PID
    pid, started = _dead_pid()
    assert not alive(pid, started)


def test_a_live_owners_record_is_not_orphaned(tmp_path):
    record = Record("sltest1", folder=tmp_path)
    record.add_bridges(["sltest1s1"])
    assert not record.orphaned()
    assert [r.tag for r in records(tmp_path)] == ["sltest1"]
    record.close()
    assert records(tmp_path) == []


def test_clean_ends_recorded_processes_of_a_dead_owner_and_only_them(tmp_path):
    owner, owner_start = _dead_pid()
    ours = subprocess.Popen(["sleep", "60"])
    theirs = subprocess.Popen(["sleep", "60"])  # same command, not recorded
    try:
        record = Record("sltest2", folder=tmp_path, owner=owner, owner_start=owner_start)
        record.add_process(ours.pid, "sleep (ours)")
        # A PID recorded with another start time is a reused PID: never signalled.
        record.processes[theirs.pid] = {"name": "reused", "start": (start_time(theirs.pid) or 0) + 1}
        record._write()
        loaded = Record.load(record.path)
        assert loaded.orphaned()
        assert ("process", f"{ours.pid} sleep (ours)") in loaded.leftovers()
        assert all(str(theirs.pid) not in name for _, name in loaded.leftovers())
        removed = loaded.remove()
        assert ("process", f"{ours.pid} sleep (ours)") in removed
        assert ours.wait(5) is not None
        assert theirs.poll() is None, "a process the record does not name was signalled"
        assert not record.path.exists()
    finally:
        for proc in (ours, theirs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_an_unreadable_record_is_skipped(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    assert records(tmp_path) == []


def test_clean_ends_what_recorded_processes_started(tmp_path):
    """A node's shell is recorded, the commands it runs are not: killed alone, the shell
    would leave them running (found by the SIGKILL series: a ping of 5,000 outlived clean)."""
    owner, owner_start = _dead_pid()
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        record = Record("sltest3", folder=tmp_path, owner=owner, owner_start=owner_start)
        record.add_process(shell.pid, "shell of h1")
        child = wait_for_child(shell.pid)
        child_start = start_time(child)
        left = Record.load(record.path).leftovers()
        assert any(name.startswith(f"{child} sleep 60") and "shell of h1" in name for _, name in left), left
        Record.load(record.path).remove()
        assert shell.wait(5) is not None
        assert not alive(child, child_start), "the shell's child outlived clean"
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def wait_for_child(pid: int) -> int:
    """The first child of `pid` (bounded: 5 s)."""
    import time

    from lab.records import descendants

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = descendants({pid})
        if found:
            return min(found)
        time.sleep(0.02)
    raise AssertionError(f"process {pid} started no child")
