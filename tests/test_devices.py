"""Every session device follows the protocol written in `lab/devices/base.py`, with no
network: the members and their signatures, what each declares (sessions kept, built by
the lab, configuration scope, checker, ready event), and that devices sit below the lab
(no device module imports `lab.net`)."""

import ast
import inspect
import pkgutil
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

import lab.devices
from lab.config import (
    Adc,
    FirewallPolicy,
    FtpServerConfig,
    HealthCheck,
    L4Balancer,
    Pool,
    RealServer,
    VrrpInstance,
)
from lab.devices import DEVICE_CLASSES, Balancer, Firewall, Runner, SessionDevice, node_devices
from lab.devices.base import LIFECYCLE, DeviceHolder
from lab.devices.drivers import NoneDriver
from lab.devices.health_agent import HealthAgentConfig
from lab.devices.l4 import BalancerPorts
from lab.devices.nft_firewall import FirewallPorts
from lab.errors import LabError
from lab.render.conntrackd import SyncSettings
from lab.render.turnserver import StunConfig

DEVICES_DIR = Path(lab.devices.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(DEVICES_DIR)]))


class FakeRunner:
    """A runner that runs nothing: commands are recorded, files go to a temporary folder."""

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.commands: list[list[str]] = []

    @property
    def paths(self) -> "FakeRunner":
        return self

    def run(self, node: str, argv: Sequence[str], **options: Any) -> str:
        self.commands.append(list(argv))
        return ""

    def start(self, node: str, argv: Sequence[str], name: str, **options: Any) -> Any:
        raise AssertionError(f"nothing starts here: {argv}")

    def stop(self, proc: Any) -> int | None:
        return 0

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return check()

    def runtime_dir(self) -> Path:
        return self.root


SERVERS = (RealServer("10.0.2.11", 80),)
BALANCER = L4Balancer("10.0.1.100", 80, SERVERS)
ADC = Adc("10.0.1.100", 80, (Pool("web", SERVERS),))
VRRP = VrrpInstance("lb1-c", 51, 150, "10.0.1.100/24")


def build(cls: type, runner: FakeRunner, built_by_lab: bool) -> tuple[Any, Any]:
    """One device of each class on node "n", with a valid config for it."""
    made: dict[str, tuple[Callable[[], Any], Any]] = {
        "NftFirewall": (
            lambda: cls(runner, "n", FirewallPorts("n-in", "n-out"), built_by_lab=built_by_lab),
            FirewallPolicy(),
        ),
        "KernelBalancer": (
            lambda: cls(runner, "n", BalancerPorts("n-c", "n-s", "02:00:00:00:00:01"), built_by_lab),
            BALANCER,
        ),
        "AdcDaemon": (
            lambda: cls(runner, "n", ADC, "haproxy", "n-haproxy", range(1000, 1010), built_by_lab),
            ADC,
        ),
        "FtpServer": (
            lambda: cls(runner, "n", FtpServerConfig(root=str(runner.root)), "ftp", built_by_lab),
            FtpServerConfig(root=str(runner.root)),
        ),
        "Keepalived": (lambda: cls(runner, "n", VRRP, "n-keepalived", built_by_lab), [VRRP]),
        "ConntrackSync": (
            lambda: cls(runner, "n", "n-conntrackd", built_by_lab=built_by_lab),
            SyncSettings("10.0.3.1", "10.0.3.2", "n-sync"),
        ),
        "HealthAgent": (
            lambda: cls(runner, "n", "n-health", built_by_lab),
            HealthAgentConfig(HealthCheck(), range(1000, 1010), BALANCER, "n-s"),
        ),
        "ExternalDevice": (lambda: cls(runner, "n", NoneDriver(), built_by_lab=built_by_lab), object()),
        "StunServer": (
            lambda: cls(runner, "n", StunConfig("10.0.2.20", "10.0.2.21"), "stun", built_by_lab),
            StunConfig("10.0.2.20", "10.0.2.21"),
        ),
    }
    factory, config = made[cls.__name__]
    return factory(), config


def device_classes_in_package() -> set[type]:
    """Classes defined in lab/devices/ that have a session lifecycle (holders excepted)."""
    found = set()
    # base: the protocol and shared plumbing; drivers: what reads a device's table, not devices
    for name in (m for m in MODULES if m not in ("base", "drivers")):
        module = import_module(f"lab.devices.{name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or getattr(cls, "_is_protocol", False):
                continue
            if issubclass(cls, DeviceHolder):
                continue
            if any(callable(getattr(cls, member, None)) for member in ("configure", "sessions", "reset")):
                found.add(cls)
    return found


def test_every_device_class_is_listed():
    assert device_classes_in_package() == set(DEVICE_CLASSES)


@pytest.mark.parametrize("cls", DEVICE_CLASSES, ids=lambda c: c.__name__)
def test_device_follows_the_written_protocol(cls, tmp_path):
    assert cls.__doc__, f"{cls.__name__}: no docstring"
    for member in LIFECYCLE:
        assert callable(getattr(cls, member, None)), f"{cls.__name__}: no {member}()"
    configure = inspect.signature(cls.configure)
    first, *rest = list(configure.parameters.values())[1:]
    assert first.default is inspect.Parameter.empty, f"{cls.__name__}.configure: takes its config first"
    assert all(p.default is not inspect.Parameter.empty for p in rest), (
        f"{cls.__name__}.configure: {configure}"
    )
    assert list(inspect.signature(cls.check).parameters) == ["self", "path"]
    for member in ("sessions", "reset", "stop"):
        assert list(inspect.signature(getattr(cls, member)).parameters) == ["self"], (
            f"{cls.__name__}.{member}"
        )
    assert isinstance(cls.__dict__.get("keeps_sessions"), bool), f"{cls.__name__}: declare keeps_sessions"
    assert cls.config_scope in ("lab", "case")
    assert isinstance(cls.checker, str) and cls.checker
    assert isinstance(cls.ready_on, str) and cls.ready_on
    assert "built_by_lab" in inspect.signature(cls.__init__).parameters

    device, config = build(cls, FakeRunner(tmp_path), built_by_lab=True)
    assert device.built_by_lab is True
    assert isinstance(device, SessionDevice)
    if not cls.keeps_sessions:
        assert device.sessions() == []


@pytest.mark.parametrize("cls", DEVICE_CLASSES, ids=lambda c: c.__name__)
def test_a_device_the_lab_did_not_build_refuses_configure(cls, tmp_path):
    runner = FakeRunner(tmp_path)
    device, config = build(cls, runner, built_by_lab=False)
    assert device.built_by_lab is False
    with pytest.raises(LabError, match="not built by the lab"):
        device.configure(config)
    assert runner.commands == []


def test_only_the_firewall_keeps_its_configuration_between_cases():
    assert {c.__name__ for c in DEVICE_CLASSES if c.config_scope == "lab"} == {"NftFirewall"}


@pytest.mark.parametrize("holder", [Firewall, Balancer], ids=lambda c: c.__name__)
def test_holders_keep_the_calls_cases_make(holder):
    calls = {
        Firewall: "apply_policy apply_stateless sessions reset counters drops flush_sessions start_sync "
        "stop_sync agents policy syncd",
        Balancer: "apply add_vip dsr_ports start_adc start_vrrp start_sync start_health health_events "
        "sessions reset balancer health",
    }[holder].split()
    assert issubclass(holder, DeviceHolder)
    for name in ["lab_start", "devices", *calls]:
        assert hasattr(holder, name), f"{holder.__name__}: no {name}"
    # Until lab.net lists devices with node_devices, it finds holders as SessionDevices.
    for name in (
        "sessions",
        "reset",
        "stop",
        "keeps_sessions",
        "built_by_lab",
        "config_scope",
        "checker",
        "ready_on",
    ):
        assert hasattr(holder, name), f"{holder.__name__}: no {name} (the lab's SessionDevice check)"


def test_node_devices_of_a_plain_node_is_empty():
    assert node_devices(object()) == []


@pytest.mark.parametrize("module", MODULES)
def test_no_device_module_imports_the_lab(module):
    tree = ast.parse((DEVICES_DIR / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert not {name for name in imported if name == "lab.net" or name.startswith("lab.net.")}
    assert "lab.traffic" not in imported


def test_the_lab_is_a_runner(tmp_path):
    from lab.net import Lab

    assert isinstance(Lab(None, tmp_path / "run"), Runner)
