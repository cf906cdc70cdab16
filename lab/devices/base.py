"""The session-device protocol, what a device needs of where it runs, the role registry.

A **session device** is one daemon or kernel function that forwards, balances or serves
sessions: the nftables firewall, the kernel L4 balancer, haproxy/nginx, vsftpd,
keepalived, conntrackd, the health-check agent. Each is its own class with one role, and
each follows one lifecycle:

1. `configure(config)`, from a typed config (`lab.config`): validate it once
   (`config.problems()`, every problem named) -> render it (a pure function of
   `lab.render`, golden-file tested) -> check the file with the daemon's own checker
   (`checker` names it: `nft -c`, `haproxy -c`, `nginx -t`, `keepalived -t`; where the
   daemon has none, `checker` says so and why) -> load it, or start the daemon as an
   owned process -> return once it is ready on an event (`ready_on` names it: a line it
   logs, a port that listens, a socket that appears, a return code).
   Devices that a case builds take their config in the constructor and keep `start()`,
   which is `configure(self.config)` and returns the device.
2. `sessions()`: its session table as data (`lab.conntrack.Session` rows), or, where
   `keeps_sessions` is False, an empty list: the device keeps none of its own (conntrackd
   writes into the kernel's table, which the node's firewall or balancer lists).
3. `reset()`, between cases, with one meaning for every device: **a case finds the device
   as the lab's standing configuration left it**. Its session table is empty, its counters
   are zero, and what a case configured on top of the standing configuration is gone.
   `config_scope` says which configuration stands: "lab" (the firewall: its policy is the
   node's forwarding rule, loaded at start and by module fixtures, and stays until the
   next `configure`: a firewall without a policy would forward everything), or "case"
   (the balancers and daemons: each case configures the one it needs; reset removes what
   the last case loaded, and the processes a case started are ended by the lab with it).
4. `stop()`: end its owned processes by PID and undo what it set on the node.

**Devices the lab did not build.** `built_by_lab` is True for every device here. A device
the lab reaches but did not render or start (an appliance, a host's own firewall, over
SSH through the same `Runner`) sets it False: it has `sessions()`, `reset()` and
`stop()` (which then ends nothing it did not start), but `configure()` refuses (raises
`LabError`) or is absent, and nothing here assumes the lab rendered its configuration.

**Where a device runs.** A device needs only a `Runner` for its node: run a command,
start an owned process that is ready on a regex, stop it by PID, wait for a condition,
a short runtime directory, and where to write (`paths.root`, `paths.logs`). `lab.net.Lab`
is one (structurally); devices never import `lab.net`, so they sit below the lab.

**Nodes hold devices.** A topology names a node's `role`; `device_class(role, base)` gives
the Mininet node class it runs as, a *holder*: `lab_start(runner)` once the network is
up, `devices()` the devices it holds (lb1: L4 balancer + ADC + VRRP + sync + health
checks), and the calls cases make, delegated to those devices. `node_devices(node)` lists
any node's devices ([] for a plain host).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, TypeVar, runtime_checkable

from lab.errors import CommandError, ConfigError, LabError

if TYPE_CHECKING:
    from lab.conntrack import Session
    from lab.procs import Proc


D = TypeVar("D")
P = TypeVar("P", bound="Proc")


class RunnerPaths(Protocol):
    """Where a runner writes: rendered files and evidence (`root`), process logs (`logs`)."""

    @property
    def root(self) -> Path: ...

    @property
    def logs(self) -> Path: ...


@runtime_checkable
class Runner(Protocol):
    """What a device needs of where it runs (`lab.net.Lab` is one; an SSH runner could be)."""

    @property
    def paths(self) -> RunnerPaths: ...

    def run(
        self, node: str, argv: Sequence[str], timeout: float = 30, check: bool = True, merge: bool = True
    ) -> str:
        """Run a command in `node` to completion; its output (CommandError on failure;
        with `merge` off, stdout alone)."""
        ...

    def start(
        self, node: str, argv: Sequence[str], name: str, ready: str | None = None, ready_timeout: float = 10
    ) -> Proc:
        """Start an owned process in `node`, ready once its output shows the regex `ready`."""
        ...

    def stop(self, proc: Proc) -> int | None:
        """End an owned process by PID."""
        ...

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll `check` until it returns something true (LabTimeout naming `what`)."""
        ...

    def runtime_dir(self) -> Path:
        """A short per-run directory for sockets and lock files."""
        ...


@runtime_checkable
class SessionSource(Protocol):
    """Anything that can list the sessions it holds: a kernel's conntrack, a daemon's
    statistics, a controller's table."""

    name: str

    def sessions(self) -> list[Session]: ...


@runtime_checkable
class SessionDevice(SessionSource, Protocol):
    """A session device, as the module docstring writes it down: the members every device
    shares. `configure(config, ...)` takes each device's own typed config and
    `check(path)` exists only where the lab renders a file, so both are required of the
    device classes by `LIFECYCLE` (tests/test_devices.py) rather than typed here; which
    also lets a device the lab did not build satisfy this protocol without them."""

    keeps_sessions: ClassVar[bool]  # False: sessions() is [] by design
    built_by_lab: bool  # False: the lab reaches it but did not render or start it
    config_scope: ClassVar[Literal["lab", "case"]]  # which configuration reset() keeps
    checker: ClassVar[str]  # the daemon's own check of a rendered file, or why there is none
    ready_on: ClassVar[str]  # the event that says it is up

    def reset(self) -> None:
        """A case finds the device as the standing configuration left it (see above)."""
        ...

    def stop(self) -> None:
        """End its owned processes by PID; undo what it set on its node."""
        ...


# The members `tests/test_devices.py` requires of every device class in lab/devices/.
LIFECYCLE = ("configure", "check", "sessions", "reset", "stop")


class DeviceNode(Protocol):
    """A node holding session devices (a topology role's node class)."""

    name: str

    def lab_start(self, runner: Runner) -> None: ...

    def devices(self) -> list[SessionDevice]: ...


def daemon(proc: P, own_log: Path | None = None) -> P:
    """Mark a device's process as a daemon (`Proc.daemon`): it runs until the lab stops
    it, so its ending on its own is a death the lab reports at the case's next wait, with
    the last lines of `own_log` (where it logs, if not on its output). Marked on the
    process any runner returns, so runners need no new option."""
    proc.daemon = True
    proc.own_log = own_log
    return proc


def node_devices(node: object) -> list[SessionDevice]:
    """The session devices `node` holds ([] for a plain host, or a holder not started)."""
    devices = getattr(node, "devices", None)
    return list(devices()) if callable(devices) else []


class Device:
    """Plumbing the device classes share (not the protocol: each class still declares its
    own `keeps_sessions`, `config_scope`, `checker`, `ready_on` and its `configure` and
    `check`): its runner and node, its name, the process it owns, if any."""

    def __init__(self, runner: Runner, node: str, name: str, built_by_lab: bool = True):
        self.runner, self.node, self.name, self.built_by_lab = runner, node, name, built_by_lab
        self.proc: Proc | None = None

    # Each device class defines it with its own typed config (see the module docstring).
    configure: Callable[..., Any]

    def made_with(self) -> Any:
        """The configuration it was made with (a device a case builds takes it at once)."""
        raise LabError(f"{self.name}: made without a configuration to start with")

    def start(self, timeout: float | None = None) -> Self:
        """`configure` with the configuration it was made with; returns itself."""
        if timeout is None:
            self.configure(self.made_with())
        else:
            self.configure(self.made_with(), timeout)
        return self

    def _configurable(self) -> None:
        """For `configure()`: a device the lab did not build is not the lab's to configure."""
        if not self.built_by_lab:
            raise LabError(f"{self.name}: not built by the lab; its configuration is its owner's")

    @staticmethod
    def _installed(tool: str, package: str | None = None) -> None:
        """Refuse at once, in one line, when the daemon is not on this machine."""
        if shutil.which(tool) is None:
            raise LabError(f"{package or tool} is not installed: run scripts/bootstrap.sh")

    def _run_check(self, argv: Sequence[str], refused: Callable[[str], str]) -> None:
        """Run the daemon's own check of its rendered file; refused with `refused(output)`."""
        try:
            self.runner.run(self.node, argv)
        except CommandError as exc:
            raise ConfigError(refused(exc.output)) from None

    def _wait_listening(self, port: int, who: str, where: str, timeout: float) -> None:
        """Wait until the owned process (`who`) listens on TCP `port`; fail early if it exited."""
        proc, node = self.proc, self.node
        assert proc is not None

        def listening() -> bool:
            if not proc.running():
                raise LabError(f"{who} on {node} exited at start: {proc.output().strip()[-300:]}")
            return bool(self.runner.run(node, ["ss", "-Hltn", f"sport = :{port}"], check=False).strip())

        self.runner.wait(listening, timeout, f"{who} on {node} to listen on {where}")

    def sessions(self) -> list[Session]:
        """None of its own (a device whose `keeps_sessions` is False)."""
        return []

    def reset(self) -> None:
        """Nothing stands: the case that started its process ended it."""

    def stop(self) -> None:
        """End its process by PID."""
        if self.proc is not None:
            self.runner.stop(self.proc)

    def running(self) -> bool:
        return self.proc is not None and not self.proc.stopped and self.proc.running()


class DeviceHolder:
    """The part every holder node shares: the runner it was started with and its devices.

    While `lab.net` still finds holders with `isinstance(node, SessionDevice)`, a holder
    passes that check as the node seen as one device: `sessions()` is the node's kernel
    table, `reset()` goes to each device it holds, and `stop` is Mininet's own (it ends the
    node; `stop_devices()` ends the devices).
    """

    name: str
    keeps_sessions: ClassVar[bool] = True
    built_by_lab: bool = True
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = "per device (see devices())"
    ready_on: ClassVar[str] = "per device (see devices())"
    runner: Runner | None = None
    holder_kind: ClassVar[str] = "node"  # how messages name it: "firewall fw1"

    def _runner(self) -> Runner:
        if self.runner is None:
            raise LabError(f"{self.holder_kind} {self.name} is not part of a running lab")
        return self.runner

    def _started(self, device: D | None) -> D:
        """One of its devices, made by `lab_start` (LabError before the lab started it)."""
        self._runner()
        assert device is not None
        return device

    def _attach(self, runner: Runner, interfaces: Sequence[str | None]) -> None:
        """`lab_start`'s first step: keep the runner, check the topology gave the node the
        interfaces its devices need (None: an optional one it was not given)."""
        self.runner = runner
        names = {intf.name for intf in self.intfList()}  # type: ignore[attr-defined]  # Mininet's
        missing = [n for n in interfaces if n is not None and n not in names]
        if missing:
            has = ", ".join(sorted(names))
            raise ConfigError(
                f"{self.holder_kind} {self.name}: no interface {', '.join(missing)} (has {has})"
            )

    def devices(self) -> list[SessionDevice]:
        raise NotImplementedError

    def stop_devices(self) -> None:
        """Stop every device this node holds (Mininet's own `stop()` ends the node)."""
        for device in reversed(self.devices()):
            device.stop()


ROLES: dict[str, type] = {}


def register(role: str) -> Any:
    """Class decorator: topology nodes with `role=<role>` run as this class."""

    def add(cls: type) -> type:
        ROLES[role] = cls
        return cls

    return add


def device_class(role: str, base: type | None = None) -> type:
    """The class a node of `role` runs as, layered on the topology's own class `base`."""
    try:
        device = ROLES[role]
    except KeyError:
        known = ", ".join(sorted(ROLES)) or "none"
        raise ConfigError(f"unknown role {role!r} (known: {known})") from None
    if base is None or issubclass(device, base):
        return device
    return type(f"{device.__name__}On{base.__name__}", (device, base), {})
