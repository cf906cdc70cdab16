"""What every `sessionlab` command shares: exit statuses, the console, the results folder,
`key=value` options and host-marked output lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from lab.catalog import ROOT
from lab.errors import ConfigError

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130

# Long lines stay whole in CI logs; no markup: figures, case ids and messages hold [brackets]
console = Console(highlight=False, soft_wrap=True, markup=False)
RESULTS = ROOT / "results"


def params(items: list[str], option: str) -> dict[str, Any]:
    """`key=value` options (`--param`) as a dict; anything else refused naming the option."""
    found: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {item!r}: expected key=value")
        found[key] = value
    return found


def printer(label: str) -> Callable[[str], None]:
    """Print a host's output lines, each marked with the host."""

    def show(line: str) -> None:
        console.print(f"[{label}] {line}")

    return show
