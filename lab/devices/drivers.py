"""Session-table drivers: how the lab reads the table of a device it did not build.

A driver is one small class with four members (`Driver` below): its `name`, the device's
session table as `lab.conntrack.Session` rows, its counters as totals, and `close()`.
Drivers only read: nothing here runs a command that changes the device (no flush, no
delete, no zeroing of counters). To add one (a vendor's CLI over SSH, an SNMP table),
write a class with those members and list its factory in `DRIVERS`.

- `NoneDriver`: traffic only. The device's table is not read; `sessions()` is [] and
  `table` says why, so a verdict never reads an empty list as "no sessions".
- `LinuxDriver`: a Linux box over SSH (paramiko), host key checked exactly as
  `lab.remote.connect` checks it (an unknown or changed key is refused; keys or the agent,
  never a password). It runs `conntrack -L` and `conntrack -S`, which need root (or
  CAP_NET_ADMIN) on the device.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lab.conntrack import Session, parse_table
from lab.errors import ConfigError, LabError

if TYPE_CHECKING:
    import paramiko

    from lab.remote import Host

log = logging.getLogger(__name__)

# The only commands LinuxDriver runs on a device: both read, neither changes anything.
CONNTRACK_LIST = "conntrack -L"
CONNTRACK_STATS = "conntrack -S"
READ_ONLY = frozenset({CONNTRACK_LIST, CONNTRACK_STATS})
_KEYVAL = re.compile(r"([a-z_]+)=(\d+)")


@runtime_checkable
class Driver(Protocol):
    """What the lab needs of a device's session table.

    `name`: the driver's name as the CLI spells it (`--driver NAME`).
    `reads_table`: False for a driver that reads nothing (its `sessions()` is [] by
    design, which says nothing about the device).
    `table`: one line saying where the table comes from ("conntrack over SSH at
    root@10.0.0.5:22", "not read: traffic only"), for reports.
    `sessions()`: the table now, one `Session` per entry ([] when it is not read).
    `counters()`: the table's counters as totals ({} when not read).
    `close()`: let go of the connection; the device itself is left as it was.
    """

    name: str
    reads_table: bool
    table: str

    def sessions(self) -> list[Session]: ...

    def counters(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class NoneDriver:
    """Traffic only: the device's table is not read (every verdict comes from traffic)."""

    name = "none"
    reads_table = False
    table = "not read: traffic only (--driver none)"

    def sessions(self) -> list[Session]:
        """[]: not "no sessions", but none read (see `table`)."""
        return []

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        """Nothing to let go of."""


def parse_stats(text: str) -> dict[str, int]:
    """`conntrack -S` output (one line per CPU, `cpu=N found=... invalid=... drop=...`) as
    totals over the CPUs: {"found": ..., "invalid": ..., "insert_failed": ..., ...}. The
    keys are the kernel's own (they differ between kernels: older ones also count
    `searched`, `new`, `delete`), so whatever the line holds is summed; `cpus` counts lines."""
    totals: dict[str, int] = {}
    cpus = 0
    for line in text.splitlines():
        pairs = _KEYVAL.findall(line)
        if not pairs or pairs[0][0] != "cpu":
            continue
        cpus += 1
        for key, value in pairs[1:]:
            totals[key] = totals.get(key, 0) + int(value)
    if cpus:
        totals["cpus"] = cpus
    return totals


class LinuxDriver:
    """A Linux device's conntrack table over SSH: `conntrack -L` and `conntrack -S`.

    The connection is made at construction, so a bad host, an unknown host key or a
    refused key is one clear error before the lab builds anything; `close()` ends it.
    """

    name = "linux"
    reads_table = True

    def __init__(
        self,
        host: Host | str,
        known_hosts: Path | None = None,
        identity: Path | None = None,
        accept_new: bool = False,
        timeout: float = 30,
    ):
        from lab.remote import KNOWN_HOSTS, Host, connect

        self.host = Host.parse(host) if isinstance(host, str) else host
        self.known_hosts = known_hosts or KNOWN_HOSTS
        self.timeout = timeout
        self.table = f"conntrack over SSH at {self.host}"
        self._client: paramiko.SSHClient | None = connect(self.host, self.known_hosts, accept_new, identity)

    def _run(self, command: str) -> str:
        """Run one of the read-only commands; its standard output (stderr kept apart: conntrack
        writes its summary line there, which must not land inside the table's lines)."""
        if command not in READ_ONLY:
            raise LabError(f"{self.host}: {command!r} is not one of the driver's read-only commands")
        if self._client is None:
            raise LabError(f"{self.host}: the driver's connection is closed")
        try:
            _, stdout, stderr = self._client.exec_command(command, timeout=self.timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace").strip()
            status = stdout.channel.recv_exit_status()
        except (OSError, EOFError) as exc:  # socket.timeout is an OSError
            raise LabError(
                f"{self.host}: `{command}` failed over SSH ({exc or type(exc).__name__})"
            ) from None
        if status != 0:
            said = err.splitlines()[-1] if err else "no output"
            raise LabError(f"{self.host}: `{command}` exited {status}: {said}")
        return out

    def sessions(self) -> list[Session]:
        """Every entry of the device's table (`conntrack -L`, IPv4)."""
        return parse_table(self._run(CONNTRACK_LIST))

    def counters(self) -> dict[str, int]:
        """The table's counters summed over the CPUs (`conntrack -S`, see `parse_stats`)."""
        return parse_stats(self._run(CONNTRACK_STATS))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# A driver from the CLI's options: --ssh, --known-hosts, --identity, --accept-new.
DriverFactory = Callable[[str | None, Path | None, Path | None, bool], Driver]


def _none(ssh: str | None, known_hosts: Path | None, identity: Path | None, accept_new: bool) -> Driver:
    if ssh is not None:
        raise ConfigError(f"--ssh {ssh}: --driver none reads no table (use --driver linux to read it)")
    return NoneDriver()


def _linux(ssh: str | None, known_hosts: Path | None, identity: Path | None, accept_new: bool) -> Driver:
    if ssh is None:
        raise ConfigError("--driver linux reads the table over SSH: give --ssh user@host[:port]")
    return LinuxDriver(ssh, known_hosts, identity, accept_new)


# Every driver the CLI knows, by the name `--driver` takes.
DRIVERS: dict[str, DriverFactory] = {"none": _none, "linux": _linux}


def driver_from(
    spec: str,
    ssh: str | None = None,
    known_hosts: Path | None = None,
    identity: Path | None = None,
    accept_new: bool = False,
) -> Driver:
    """The driver the CLI names (`--driver linux --ssh root@10.0.0.5`); bad input is one
    ConfigError line (an unknown driver, --ssh missing or not wanted, an unknown host key).
    `accept_new`: trust a host never seen and write its key down (OpenSSH's accept-new, as
    `lab.remote.connect` does); a changed key is refused regardless."""
    factory = DRIVERS.get(spec)
    if factory is None:
        known = ", ".join(sorted(DRIVERS))
        raise ConfigError(f"--driver {shlex.quote(spec)}: no such driver (known: {known})")
    return factory(ssh, known_hosts, identity, accept_new)
