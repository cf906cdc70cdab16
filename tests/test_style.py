"""The code style we hold ourselves to: ruff (lint and format) and mypy on the library."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
        return found
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "lab", "controllers", "bench", "tests", "testcases", "topologies"],
        ["ruff", "format", "--check", "lab", "controllers", "bench", "tests", "testcases", "topologies"],
        ["mypy", "lab", "controllers", "bench"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(argv):
    result = subprocess.run([tool(argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
