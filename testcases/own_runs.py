"""The harness's tests that run `sessionlab` themselves (the CLI, remote hosts, SIGKILL at
any moment, the paused prompt) run beside other workers' labs (testcases/scheduling.py's
TOGETHER): each labels the runs it starts
(lab.records.LABEL_ENV, in the environment their labs inherit; over SSH, the test's own
sshd sets it) and reads only the lab records so labelled, so another worker's lab coming
or going is none of its business."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from lab.records import LABEL_ENV, RECORDS, Record


@pytest.fixture(scope="module")
def own_label(request: pytest.FixtureRequest) -> Iterator[str]:
    """A label for the module's runs (its name and a random part), in the environment while
    it runs: every `sessionlab` its tests start, and every lab those start, carries it."""
    label = f"{request.module.__name__.rsplit('.', 1)[-1]}-{secrets.token_hex(4)}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(LABEL_ENV, label)
        yield label


def own_records() -> set[str]:
    """The tags of the lab records labelled as this process's runs are (`own_label`)."""
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
