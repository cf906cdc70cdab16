"""Topology files: `topologies/<file>.py`, each with a `topos` dict as stock `mn --custom`
reads, and `PLAN`, its address plan as data (`plan(name)`).

A topology file imports the shared node classes by plain name (`from _sessionlab_nodes
import Router`): while it runs, its own folder and `topologies/` are on the import path, so
the files carry no `sys.path` header (stock Mininet: see `topologies/_sessionlab_nodes.py`)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import sys
from collections.abc import Iterator
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


@contextlib.contextmanager
def _importable(*folders: Path) -> Iterator[None]:
    """`folders` first on the import path for the block (a topology file's siblings)."""
    added = [str(f.resolve()) for f in folders]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"sessionlab_topo_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        with _importable(path.parent, TOPOLOGY_DIR):
            spec.loader.exec_module(module)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except SyntaxError as exc:
        raise ConfigError(f"{path}: not valid Python (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except SystemExit as exc:  # would end the program silently, with the file's status
        raise ConfigError(f"{path}: calls sys.exit({exc.code!r}) while it loads{_ONLY_TOPOS}") from None
    except Exception as exc:
        raise ConfigError(f"{path}: fails to load ({type(exc).__name__}: {exc})") from None
    return module


_ONLY_TOPOS = " (a topology file defines `topos` and runs nothing)"


def _what(value: Any) -> str:
    """A value as a message names it: a class by its name, anything else by its repr."""
    return f"class {value.__name__}" if isinstance(value, type) else f"{type(value).__name__} {value!r}"[:80]


def _load(path: Path) -> dict[str, Any]:
    """A file's `topos` dict, each entry a Topo class or a function that returns a Topo
    (stock `mn --custom` takes both); every bad entry named at once."""
    from mininet.topo import Topo

    topos = getattr(_module(path), "topos", None)
    if topos is None:
        raise ConfigError(f"{path}: has no `topos` dict")
    if not isinstance(topos, dict):
        raise ConfigError(f"{path}: `topos` is {_what(topos)}, not a dict of name -> Topo class")
    if not topos:
        raise ConfigError(f"{path}: `topos` is empty: name a topology in it ({{'name': MyTopo}})")
    problems = []
    for name, factory in topos.items():
        if not isinstance(name, str) or not name:
            problems.append(f"{path}: topos key {name!r} is not a name")
        elif isinstance(factory, type) and not issubclass(factory, Topo):
            problems.append(f"{path}: topos[{name!r}] is {_what(factory)}, not a subclass of mininet's Topo")
        elif not callable(factory):
            what = "not a Topo class (or a function returning a Topo)"
            problems.append(f"{path}: topos[{name!r}] is {_what(factory)}, {what}")
    if problems:
        raise ConfigError(problems)
    return topos


def _bad_parameters(factory: Any, params: dict[str, Any]) -> str | None:
    """Why `params` do not fit the topology's build (None: they do, or it cannot be told)."""
    from mininet.topo import Topo

    own = {k: v for k, v in params.items() if k not in ("hopts", "sopts", "lopts")}  # Topo's own
    plain = isinstance(factory, type) and vars(Topo)["__init__"] is getattr(factory, "__init__", None)
    target = factory.build if plain else factory
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no signature to read
        return None
    try:
        signature.bind(*([None] if plain else []), **own)
    except TypeError as exc:
        names = [n for n in signature.parameters if n != "self"]
        return f"{exc}; it takes {', '.join(names) or 'none'}"
    return None


def _build(path: Path, name: str, factory: Any, params: dict[str, Any]) -> Any:
    """The Topo `factory` builds with `params`; whatever goes wrong is one line naming
    the file and the topology."""
    from mininet.topo import Topo

    bad = _bad_parameters(factory, params)
    if bad is not None:
        raise ConfigError(f"{path}: topology {name!r}: bad parameters ({bad})")
    try:
        built = factory(**params)
    except SystemExit as exc:
        raise ConfigError(f"{path}: topology {name!r} calls sys.exit({exc.code!r}) while it builds") from None
    except Exception as exc:
        raise ConfigError(f"{path}: topology {name!r} fails to build ({type(exc).__name__}: {exc})") from None
    if not isinstance(built, Topo):
        raise ConfigError(f"{path}: topos[{name!r}] returned {_what(built)}, not a Topo")
    return built


def _harness(name: str, directory: Path) -> Any:
    import importlib

    files = available(directory)
    spec = getattr(_module(files[name]), "controllers", {}).get(name) if name in files else None
    return importlib.import_module(spec) if spec else None


def controller_for(name: str, directory: Path = TOPOLOGY_DIR, mode: str | None = None, **params: Any) -> Any:
    """The ControllerApp a topology asks for (its file's `controllers` dict), or None;
    `mode`: the app's first parameter (the S2 fabric's mode, the S4 balancer's algorithm)."""
    harness = _harness(name, directory)
    if harness is None:
        return None
    return harness.app(**params) if mode is None else harness.app(mode, **params)


def controller_modes(name: str, directory: Path = TOPOLOGY_DIR) -> tuple[str, ...]:
    """The modes a topology's controller runs in (its harness's MODES); () without one."""
    harness = _harness(name, directory)
    return tuple(getattr(harness, "MODES", ())) if harness is not None else ()


@functools.cache
def plan(name: str, directory: Path = TOPOLOGY_DIR, family: int = 4) -> Any:
    """A topology's address plan (its file's `PLAN`, a `_sessionlab_nodes.Plan`): hosts by
    group, roles, networks, named addresses, VIPs, ports, MACs. Read once per run. With
    `family=6`, its IPv6 plan (`PLAN6`), where the topology is dual-stack."""
    files = available(directory)
    if name not in files:
        raise ConfigError(f"unknown topology {name!r} (known: {', '.join(sorted(files)) or 'none'})")
    attribute = {4: "PLAN", 6: "PLAN6"}.get(family)
    if attribute is None:
        raise ConfigError(f"address family {family!r} is not 4 or 6")
    found = getattr(_module(files[name]), attribute, None)
    if found is None:
        what = "its address plan" if family == 4 else "its IPv6 address plan: the topology is IPv4 only"
        raise ConfigError(f"{files[name]}: has no `{attribute}` ({what})")
    return found


def load(name: str, directory: Path = TOPOLOGY_DIR, **params: Any) -> Any:
    """A built Topo object by name (`s1`), with its parameters."""
    files = available(directory)
    if name not in files:
        raise ConfigError(f"unknown topology {name!r} (known: {', '.join(sorted(files)) or 'none'})")
    return _build(files[name], name, _load(files[name])[name], params)


def load_spec(spec: str, **params: Any) -> tuple[str, Any]:
    """A topology by name (`s1`) or from a file of one's own, as stock `mn --custom`
    reads it: `path/file.py` (its only topology) or `path/file.py:name`. Returns the
    name and the built Topo."""
    path_text, _, name = spec.partition(".py:") if ".py:" in spec else (spec, "", "")
    if not spec.endswith(".py") and not name:
        return spec, load(spec, **params)
    path = Path(path_text if spec.endswith(".py") else path_text + ".py")
    topos = _load(path)
    if not name:
        if len(topos) != 1:
            raise ConfigError(f"{path}: defines {', '.join(topos)}: name one as {path}:NAME")
        name = next(iter(topos))
    if name not in topos:
        raise ConfigError(f"{path}: no topology {name!r} (it has {', '.join(topos)})")
    return name, _build(path, name, topos[name], params)
