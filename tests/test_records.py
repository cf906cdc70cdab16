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


def test_a_record_keeps_the_label_of_the_run_that_made_it(tmp_path, monkeypatch):
    """LABEL_ENV in the environment (inherited by a run's workers) is kept in each record, so a
    test that runs `sessionlab` beside other labs reads only its own; a record written before
    labels loads with none."""
    import json

    from lab.records import LABEL_ENV

    monkeypatch.setenv(LABEL_ENV, "test_cli_lab-1a2b")
    labelled = Record("sltest5", folder=tmp_path)
    labelled.add_bridges(["sltest5s1"])
    monkeypatch.delenv(LABEL_ENV)
    plain = Record("sltest6", folder=tmp_path)
    plain.add_bridges(["sltest6s1"])
    assert {r.tag: r.label for r in records(tmp_path)} == {"sltest5": "test_cli_lab-1a2b", "sltest6": ""}
    older = json.loads(plain.path.read_text())
    del older["label"]
    plain.path.write_text(json.dumps(older))
    assert Record.load(plain.path).label == "" and Record.load(plain.path).bridges == ["sltest6s1"]
    labelled.close()
    plain.close()


def test_a_zombie_is_not_alive():
    """An ended process its parent has not reaped yet holds nothing: `clean` must not take
    it for a run that still goes on (a killed run's workers were zombies for a while)."""
    import time
    from pathlib import Path

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        started = start_time(sleeper.pid)
        assert alive(sleeper.pid, started)
        assert not alive(sleeper.pid, (started or 0) + 1)  # another process on the same PID
        sleeper.kill()
        deadline = time.monotonic() + 5
        stat = Path(f"/proc/{sleeper.pid}/stat")
        while time.monotonic() < deadline and " Z " not in stat.read_text():
            time.sleep(0.01)
        assert " Z " in stat.read_text()  # ended, not reaped
        assert not alive(sleeper.pid, started)
    finally:
        sleeper.kill()
        sleeper.wait()
