"""Topology files: `topologies/<file>.py`, each with a `topos` dict as stock `mn --custom` reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

TOPOLOGY_DIR = Path(__file__).resolve().parent.parent / "topologies"


def available(directory: Path = TOPOLOGY_DIR) -> dict[str, Path]:
    """Topology name -> the file that defines it."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in directory.glob("*.py") if not p.name.startswith("_")):
        for name in _load(path):
            found[name] = path
    return found


def _module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"sessionlab_topo_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict[str, Any]:
    topos = getattr(_module(path), "topos", None)
    if not isinstance(topos, dict):
        raise ConfigError(f"{path}: has no `topos` dict")
    return topos


def controller_for(name: str, directory: Path = TOPOLOGY_DIR, **params: Any) -> Any:
    """The ControllerApp a topology asks for (its file's `controllers` dict), or None."""
    import importlib

    files = available(directory)
    spec = getattr(_module(files[name]), "controllers", {}).get(name) if name in files else None
    if spec is None:
        return None
    return importlib.import_module(spec).app(**params)


def load(name: str, directory: Path = TOPOLOGY_DIR, **params: Any) -> Any:
    """A built Topo object by name (`s1`), with its parameters."""
    files = available(directory)
    if name not in files:
        raise ConfigError(f"unknown topology {name!r} (known: {', '.join(sorted(files)) or 'none'})")
    try:
        return _load(files[name])[name](**params)
    except TypeError as exc:
        raise ConfigError(f"topology {name!r}: bad parameters ({exc})") from None
