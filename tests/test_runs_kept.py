"""Runs never cost data: a run that ran no case keeps no folder and prunes nothing; pruning
after a run that ran a case keeps the newest runs, `latest`'s run and runs with a failed
case; `clean --runs` removes old runs by its stated rule; run.json says what ran."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))


def sessionlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SESSIONLAB, *args], capture_output=True, text=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL
    )


def _run(root: Path, name: str, *verdicts: str, run_json: bool = True) -> Path:
    """A run folder as `sessionlab run` leaves it: run.json, one case folder per verdict
    and summary.json (none of either when `verdicts` is empty)."""
    folder = root / name
    folder.mkdir(parents=True)
    if run_json:
        (folder / "run.json").write_text("{}")
    cases = [{"name": f"c{n}", "verdict": v} for n, v in enumerate(verdicts)]
    for case in cases:
        (folder / case["name"]).mkdir()
        (folder / case["name"] / "case.json").write_text(json.dumps(case))
    if cases:
        (folder / "summary.json").write_text(json.dumps(cases))
    return folder


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_a_run_that_ran_no_case_keeps_no_folder_and_prunes_nothing(tmp_path):
    """The issue's case: invocations that ran nothing pushed a real run out. Eleven passing
    runs are there (one more than are kept); a `run` that matches no case leaves them all."""
    for n in range(11):
        _run(tmp_path, f"20260101-0000{n:02d}", "passed")
    before = _names(tmp_path)
    result = sessionlab("run", "-k", "no_case_is_called_this", "--results", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip().endswith(
        "no case matches 'no_case_is_called_this'"
    )
    assert _names(tmp_path) == before


def test_a_run_that_could_not_collect_keeps_the_file_its_message_names(tmp_path):
    corpus = Path(__file__).resolve().parent / "corpus" / "suites" / "import_error.py"
    result = sessionlab("run", str(corpus), "--results", str(tmp_path))
    assert result.returncode == 2
    (folder,) = tmp_path.iterdir()
    assert str(folder / "collection-errors.txt") in result.stderr
    info = json.loads((folder / "run.json").read_text())
    assert info["command"] == f"sessionlab run {corpus} --results {tmp_path}"
    started = datetime.fromisoformat(info["started"])
    assert started.utcoffset() is not None  # local time with its offset
    assert info["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", info["commit"])
    assert isinstance(info["dirty"], bool)


def test_settle_removes_a_run_that_ran_nothing_and_prunes_after_one_that_did(tmp_path):
    from lab.results import settle

    nothing = _run(tmp_path, "20260101-000000")
    settle(nothing, ran=None)
    assert not nothing.exists()
    for n in range(12):
        _run(tmp_path, f"20260101-0001{n:02d}", "passed")
    topo = _run(tmp_path, "20260101-000001", run_json=False)
    (topo / "topo-s1").mkdir()  # a `topo` session's folder: not counted, not pruned
    (tmp_path / "mine").mkdir()  # not named like a run: never touched
    newest = _run(tmp_path, "20260101-000200", "passed")
    settle(newest, ran=True)
    runs = sorted(p.name for p in tmp_path.glob("20260101-0001*"))
    assert len(runs) == 9 and newest.exists()  # the newest 10 runs that ran a case
    assert topo.exists() and (tmp_path / "mine").exists()


def test_pruning_keeps_latest_and_runs_with_a_failed_case(tmp_path):
    from lab.results import mark_latest, prune

    failed = _run(tmp_path, "20260101-000000", "passed", "failed")
    errored = _run(tmp_path, "20260101-000001", "error")
    pinned = _run(tmp_path, "20260101-000002", "passed")
    plain = _run(tmp_path, "20260101-000003", "passed", "skipped")
    killed = _run(tmp_path, "20260101-000004")  # killed before any case: run.json only
    for n in range(3):
        _run(tmp_path, f"20260101-0001{n:02d}", "passed")
    mark_latest(pinned)
    gone = prune(tmp_path, keep=3)
    assert sorted(gone) == [plain, killed]
    assert failed.exists() and errored.exists() and pinned.exists()
    assert not plain.exists() and not killed.exists()


def test_clean_runs_removes_all_but_the_newest_failed_ones_only_when_asked(tmp_path):
    failed = _run(tmp_path, "20260101-000000", "failed")
    passed = _run(tmp_path, "20260101-000001", "passed")
    topo = _run(tmp_path, "20260101-000002", run_json=False)
    (topo / "topo-s1").mkdir()
    newest = _run(tmp_path, "20260101-000003", "passed")
    (tmp_path / "notes").mkdir()

    dry = sessionlab("clean", "--runs", "--keep", "1", "--dry-run", "--results", str(tmp_path))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would remove") == 2 and "--failed removes it" in dry.stdout
    assert "topo-s1" in dry.stdout and "1 failed" in dry.stdout
    assert all(p.exists() for p in (failed, passed, topo, newest))

    done = sessionlab("clean", "--runs", "--keep", "1", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert failed.exists() and newest.exists() and not passed.exists() and not topo.exists()

    done = sessionlab("clean", "--runs", "--keep", "1", "--failed", "--results", str(tmp_path))
    assert done.returncode == 0 and not failed.exists() and newest.exists()
    assert (tmp_path / "notes").exists()
    assert (
        "nothing to clean" in sessionlab("clean", "--runs", "--keep", "1", "--results", str(tmp_path)).stdout
    )


def test_run_json_says_what_ran(tmp_path):
    from lab.catalog import ROOT
    from lab.results import write_run_info

    path = write_run_info(tmp_path, ["run", "s1", "-k", "idle and not wan"], ROOT)
    info = json.loads(path.read_text())
    assert info["command"] == "sessionlab run s1 -k 'idle and not wan'"
    assert datetime.fromisoformat(info["started"]).utcoffset() is not None
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert info["commit"] == head.stdout.strip()
    assert set(info) == {"command", "started", "commit", "dirty"}


def test_new_run_folders_do_not_collide(tmp_path):
    from lab.results import new_run

    made = {new_run(tmp_path) for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() for p in made)
    assert os.listdir(tmp_path)  # nothing removed at creation


def test_a_run_still_going_in_another_process_is_never_pruned(tmp_path):
    """Labs run side by side (other terminals, CI): pruning after one run must not remove
    the folder of another that started earlier and is still going."""
    from lab.results import in_progress, prune

    script = "import sys; from pathlib import Path; from lab.results import new_run; "
    script += f"print(new_run(Path({str(tmp_path)!r})), flush=True); sys.stdin.read()"
    other = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        going = Path(other.stdout.readline().strip())
        (going / "run.json").write_text("{}")  # started: no case finished yet
        for n in range(3):
            _run(tmp_path, f"29990101-00000{n}", "passed")
        assert in_progress(going)
        assert prune(tmp_path, keep=1) == [tmp_path / "29990101-000000", tmp_path / "29990101-000001"]
        assert going.exists()
    finally:
        other.communicate("", timeout=30)
    assert not in_progress(going)  # the lock went with its process
    assert prune(tmp_path, keep=1) == [going]
