"""The harness's tests that run `sessionlab` themselves (the CLI, the paused prompt, remote
hosts, SIGKILL at any moment) run beside other workers' labs (testcases/scheduling.py's
TOGETHER): each labels the runs it starts (lab.records.LABEL_ENV, in the environment their
labs inherit; over SSH, the test's own sshd sets it) and reads only the lab records so
labelled, so another worker's lab coming or going is none of its business."""

from __future__ import annotations

import os
import secrets

import pytest

from lab.records import LABEL_ENV, RECORDS, Record


def new_label(module: str) -> str:
    """A label for one test module's runs: its name and a random part (one per process)."""
    return f"{module}-{secrets.token_hex(4)}"


def label_runs(monkeypatch: pytest.MonkeyPatch, label: str) -> None:
    """Every `sessionlab` this test starts (and every lab those start) carries `label`."""
    monkeypatch.setenv(LABEL_ENV, label)


def own_records() -> set[str]:
    """The tags of the lab records labelled as this process's runs are (`label_runs`)."""
    label = os.environ.get(LABEL_ENV, "")
    assert label, f"{LABEL_ENV} is not set: own_records() would read every run's labs"
    found = set()
    for path in RECORDS.glob("*.json") if RECORDS.exists() else []:
        try:
            if Record.load(path).label == label:
                found.add(path.stem)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed or being replaced meanwhile: not one of ours to miss
    return found
