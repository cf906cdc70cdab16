"""A session device the lab did not build: a vendor VM, a cloud NAT image, a Linux router
someone else configured, attached by its interfaces (`lab.characterize.attach`).

The lab never configures, starts, stops or cleans it: `configure()` and `check()` refuse,
`reset()` and `stop()` touch nothing on the device (`stop()` only closes the driver's
connection). Its session table, where it can be read at all, comes through a driver
(`lab.devices.drivers`): over SSH for a Linux box, or none (traffic only).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from lab.devices.base import Device, Runner
from lab.devices.drivers import Driver
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.conntrack import Session


class ExternalDevice(Device):
    """A device the lab reaches but did not build; its table read through `driver`.

    `built_by_lab` is False (the protocol's tests also make one with True, to check the
    members every device shares; `configure()` refuses either way). `keeps_sessions` is
    True, as for any stateful device; whether the lab can *see* them is the driver's
    business: with `--driver none`, `sessions()` is [] and `table_read` is False.
    """

    keeps_sessions: ClassVar[bool] = True
    # "case": the lab loads nothing on it, so what reset() would remove between cases is
    # nothing; its standing configuration is its owner's, not the lab's.
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = "none: the lab renders no configuration for a device it did not build"
    ready_on: ClassVar[str] = "its driver connected (SSH) at construction; traffic shows the rest"

    def __init__(self, runner: Runner, node: str, driver: Driver, name: str = "", built_by_lab: bool = False):
        super().__init__(runner, node, name or f"external device {node}", built_by_lab)
        self.driver = driver

    @property
    def table_read(self) -> bool:
        """Whether `sessions()` reads the device's real table (False: traffic only)."""
        return self.driver.reads_table

    def configure(self, config: object) -> None:
        """Refused: its configuration is its owner's."""
        raise LabError(f"{self.name}: not built by the lab; its configuration is its owner's")

    def check(self, path: Path) -> None:
        """Refused: the lab renders no file for it (see `checker`)."""
        raise LabError(f"{self.name}: not built by the lab; it has no rendered file to check")

    def sessions(self) -> list[Session]:
        """Its table now, through the driver ([] with --driver none: not read, see `table_read`)."""
        return self.driver.sessions()

    def counters(self) -> dict[str, int]:
        """Its table's counters, through the driver ({} where not read)."""
        return self.driver.counters()

    def reset(self) -> None:
        """Touches nothing: its table and counters are its own. Cases tell their sessions
        apart by their own ports and addresses, not by an empty table."""

    def stop(self) -> None:
        """Closes the driver's connection; the device itself keeps running as it was."""
        self.driver.close()
