"""The checks every configuration shares: ports, protocols, addresses, timeouts, and the
reading of plain data (a parsed TOML document) with unknown keys rejected.

Each check appends a problem naming its place (`allow_inbound[0].port: ...`) to a list, so
a configuration's `problems()` reports every problem at once, as netlab does.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

PROTOCOLS = ("tcp", "udp")


def port(port: object, where: str, problems: list[str], key: str = "port") -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        problems.append(f"{where}.{key}: {port!r} is not a port number (1-65535)")


def proto(proto: object, where: str, problems: list[str]) -> None:
    if proto not in PROTOCOLS:
        problems.append(f"{where}.proto: {proto!r} is not one of {', '.join(PROTOCOLS)}")


def address(address: object, where: str, problems: list[str], ipv6: bool = False) -> None:
    """An IPv4 address or prefix (None: any); with `ipv6`, an IPv6 one too."""
    if address is None:
        return
    try:
        ipaddress.IPv4Network(str(address), strict=True)
        return
    except ValueError as exc:
        problem = exc
    if ipv6 and ":" in str(address):
        try:
            ipaddress.IPv6Network(str(address), strict=True)
            return
        except ValueError as exc:
            problem = exc
    what = "an IPv4 or IPv6" if ipv6 else "an IPv4"
    problems.append(f"{where}.address: {address!r} is not {what} address or prefix ({problem})")


def host(address: object, key: str, problems: list[str], ipv6: bool = False) -> None:
    """One IPv4 address (no prefix): a VIP, a peer; with `ipv6`, an IPv6 one too."""
    try:
        (ipaddress.ip_address if ipv6 else ipaddress.IPv4Address)(str(address))
    except ValueError:
        problems.append(f"{key}: {address!r} is not {'an IPv4 or IPv6' if ipv6 else 'an IPv4'} address")


def timeout(value: object, where: str, problems: list[str]) -> None:
    # conntrack keeps timeouts in whole seconds; 2**31 / 1000 keeps jiffies in range.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2_000_000:
        problems.append(f"{where}: {value!r} is not a timeout in whole seconds (1-2000000)")


IFNAMSIZ = 16  # the kernel's limit with the terminating NUL: names of at most 15 bytes
# Bytes dev_valid_name() refuses: '/', ':' and what the kernel's isspace() takes for space.
_BAD_IFNAME_BYTES = frozenset(b"/: \t\n\v\f\r\xa0")


def interface(name: object, where: str, problems: list[str]) -> None:
    """A Linux interface name, as the kernel's dev_valid_name() takes it: 1-15 bytes, not
    `.` or `..`, no `/`, `:` or whitespace; and no `"`, which an nftables rule cannot quote."""
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: {name!r} is not an interface name (1-15 characters)")
        return
    size = len(name.encode())
    bad = sorted({c for c in name if _BAD_IFNAME_BYTES & set(c.encode())})
    if size >= IFNAMSIZ:
        problems.append(f"{where}: {name!r} is {size} bytes; Linux interface names have at most 15")
    if name in (".", ".."):
        problems.append(f"{where}: {name!r} is not an interface name")
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        problems.append(f"{where}: {name!r} holds {shown}, which Linux interface names cannot")
    if '"' in name:
        problems.append(f"{where}: {name!r} holds '\"', which an nftables rule cannot quote")


def is_count(value: object, low: int = 1) -> bool:
    """A whole number (not a bool) of at least `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def refuse(problems: Sequence[str], where: str | None = None) -> None:
    """Raise one ConfigError with every problem (each prefixed with `where`), if any."""
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems] if where else list(problems))


def take(cls: type, data: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """The keys of `data` that `cls` knows; an unknown key is a problem."""
    names = {f.name for f in fields(cls)}
    if not isinstance(data, Mapping):
        problems.append(f"{where}: expected a table, got {type(data).__name__}")
        return {}
    for key in data:
        if key not in names:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(names))})")
    return {k: v for k, v in data.items() if k in names}


def items(data: Mapping[str, Any], key: str, cls: type, problems: list[str]) -> tuple[Any, ...]:
    """A list of tables under `key`, each read as a `cls`; missing required keys are problems."""
    raw = data.get(key, [])
    if not isinstance(raw, list):
        problems.append(f"{key}: expected a list of tables")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        kwargs = take(cls, item, where, problems)
        required = [f.name for f in fields(cls) if f.default is MISSING and f.name not in kwargs]
        for name in required:
            problems.append(f"{where}: missing {name!r}")
        if not required:
            out.append(cls(**kwargs))
    return tuple(out)


def load_toml(path: Path, from_dict: Callable[[Mapping[str, Any]], Any]) -> Any:
    """`from_dict` of a TOML file's data; a file that cannot be read or parsed, and every
    problem of its data, is reported naming the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError([f"{path}: {p}" for p in exc.problems]) from None


def as_data(config: Any) -> dict[str, Any]:
    """A config dataclass as the plain data its loader reads (`take`/`items`): only the
    fields that differ from their defaults, tables for nested configs; None is left out
    (TOML has no null, and every None field defaults to None)."""
    data: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        default = f.default if f.default is not MISSING else MISSING
        if value is None or value == default:
            continue
        if isinstance(value, tuple) and value and all(is_dataclass(v) for v in value):
            data[f.name] = [as_data(v) for v in value]
        elif is_dataclass(value):
            data[f.name] = as_data(value)
        else:
            data[f.name] = list(value) if isinstance(value, tuple) else value
    return data


def to_toml(config: Any, header: str = "") -> str:
    """A config dataclass as TOML its loader reads back equal (`as_data`: only what differs
    from the defaults), after `header` as comment lines: what a case applied, to redo by
    hand with `topo`'s per-node options."""
    import tomli_w

    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + tomli_w.dumps(as_data(config))
