"""`sessionlab doctor`: what this machine has of what each scenario needs, what is missing,
the command that fixes it, and which scenarios can run.

Kernel features are tried, not guessed: each is a small ruleset or qdisc loaded in a
throwaway namespace of its own (removed again), because a feature built into the kernel
leaves no module to look for.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from lab.catalog import ROOT
from lab.errors import LabError
from lab.procs import host_run

BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
FIX_ALL = "scripts/bootstrap.sh"

# Each scenario's needs beyond the base (root, Open vSwitch, namespaces, conntrack, the
# base packages and the Python dependencies); names are checks below.
BASE_PACKAGES = (
    "openvswitch-switch",
    "mininet",
    "iperf3",
    "tcpdump",
    "conntrack",
    "nftables",
    "ethtool",
    "iputils-ping",
    "curl",
    "iproute2",
    "procps",
    "python3-venv",
)
SCENARIO_NEEDS = {
    "s1": ["package conntrackd"],
    "s2": ["package conntrackd", "python os-ken"],
    "s3": ["package vsftpd", "package lftp", "kernel: FTP conntrack helper", "kernel: NAT"],
    "s4": [
        "package haproxy",
        "package nginx-light",
        "package keepalived",
        "package conntrackd",
        "package wrk",
        "kernel: NAT",
        "python os-ken",
    ],
    "s5": ["package hping3", "package nmap", "kernel: SYN proxy"],
    "s6": ["package coturn", "package vsftpd", "package openssh-server", "package socat", "kernel: NAT"],
}
BASE_NEEDS = [
    "root",
    "Open vSwitch running",
    "Open vSwitch userspace datapath",
    "kernel: network namespaces",
    "kernel: connection tracking",
    "kernel: HTB rate limits",
    *(f"package {p}" for p in BASE_PACKAGES),
]

KERNEL_RULESETS = {
    "kernel: connection tracking": """table inet t {
  chain c { type filter hook forward priority 0; ct state established accept
  }
}""",
    "kernel: FTP conntrack helper": """table inet t {
  ct helper ftp { type "ftp" protocol tcp
  }
  chain c { type filter hook prerouting priority 0; tcp dport 21 ct helper set "ftp"
  }
}""",
    "kernel: NAT": """table ip t {
  chain p { type nat hook postrouting priority 100; masquerade
  }
}""",
    "kernel: SYN proxy": """table inet t {
  chain c { type filter hook forward priority 0; tcp dport 80 synproxy mss 1460 wscale 7
  }
}""",
}


@dataclass(frozen=True)
class Check:
    """One finding: `ok` None means not checked (a prerequisite failed); `optional`
    findings never stop a scenario."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    optional: bool = False


def bootstrap_packages(path=BOOTSTRAP) -> list[str]:  # type: ignore[no-untyped-def]
    """The Debian packages scripts/bootstrap.sh installs (its PACKAGES array): one list."""
    found = re.search(r"PACKAGES=\(([^)]*)\)", path.read_text())
    if not found:
        raise LabError(f"{path}: no PACKAGES=( ... ) list")
    return found.group(1).split()


def _package(name: str) -> Check:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", name], capture_output=True, text=True
    )
    ok = result.returncode == 0 and "install ok installed" in result.stdout
    detail = result.stdout.split()[-1] if ok else "not installed"
    return Check(f"package {name}", ok, detail, "" if ok else f"apt-get install -y {name}  (or {FIX_ALL})")


def _python(requirement: str) -> Check:
    name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Check(f"python {name}", False, "not installed", f"{FIX_ALL}  (creates .venv)")
    return Check(f"python {name}", True, version)


def python_checks() -> list[Check]:
    try:
        requirements = importlib.metadata.requires("sessionlab") or []
    except importlib.metadata.PackageNotFoundError:
        return [Check("python sessionlab", False, "not installed", f"{FIX_ALL}  (creates .venv)")]
    return [_python(r) for r in requirements if "extra ==" not in r]


def _ovs() -> list[Check]:
    fix = f"/usr/share/openvswitch/scripts/ovs-ctl start  (or {FIX_ALL})"
    if shutil.which("ovs-vsctl") is None:
        return [
            Check(
                "Open vSwitch running",
                False,
                "ovs-vsctl not installed",
                f"apt-get install -y openvswitch-switch  (or {FIX_ALL})",
            )
        ]
    try:
        host_run(["ovs-vsctl", "--timeout=3", "show"], timeout=10)
    except LabError as exc:
        return [
            Check("Open vSwitch running", False, str(exc).splitlines()[0][:80], fix),
            Check("Open vSwitch userspace datapath", None, "not checked: Open vSwitch is not running"),
        ]
    types = host_run(["ovs-vsctl", "--timeout=3", "get", "Open_vSwitch", ".", "datapath_types"], check=False)
    netdev = "netdev" in types
    return [
        Check("Open vSwitch running", True, "ovs-vswitchd answers"),
        Check(
            "Open vSwitch userspace datapath",
            netdev,
            types.strip() or "unknown",
            "" if netdev else "an Open vSwitch build with the netdev (userspace) datapath",
        ),
    ]


def _in_namespace(ns: str, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=20
    )


def kernel_checks() -> list[Check]:
    """Each kernel feature, tried in a throwaway namespace."""
    ns = f"sldoc{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        names = ["kernel: network namespaces", *KERNEL_RULESETS, "kernel: HTB rate limits", "kernel: netem"]
        first = Check(
            names[0],
            False,
            made.stderr.strip()[:80] or "ip netns add failed",
            "a kernel with network namespaces",
        )
        return [first] + [Check(n, None, "not checked: no namespace") for n in names[1:]]
    found = [Check("kernel: network namespaces", True, "ip netns add works")]
    try:
        for name, ruleset in KERNEL_RULESETS.items():
            result = _in_namespace(ns, ["nft", "-f", "-"], ruleset)
            _in_namespace(ns, ["nft", "flush", "ruleset"])
            detail = (
                "loads"
                if result.returncode == 0
                else (result.stderr.strip().splitlines() or ["fails"])[0][:80]
            )
            found.append(
                Check(
                    name,
                    result.returncode == 0,
                    detail,
                    "" if result.returncode == 0 else "a kernel built with it",
                )
            )
        _in_namespace(ns, ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        _in_namespace(ns, ["ip", "link", "set", "d0", "up"])
        for name, qdisc, optional in (
            ("kernel: HTB rate limits", ["htb", "default", "1"], False),
            ("kernel: netem", ["netem", "delay", "1ms"], True),
        ):
            result = _in_namespace(ns, ["tc", "qdisc", "replace", "dev", "d0", "root", *qdisc])
            ok = result.returncode == 0
            detail = "works" if ok else "missing"
            if optional and not ok:
                detail = "missing: impaired links use the lab's relay element instead"
            found.append(Check(name, ok, detail, optional=optional))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return found


def run_checks(progress: Callable[[str], None] | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    note = progress or (lambda _: None)
    root = os.geteuid() == 0
    checks = [
        Check(
            "root", root, "uid 0" if root else f"uid {os.geteuid()}", "" if root else "run it as root (sudo)"
        )
    ]
    note("packages")
    names = list(dict.fromkeys([*BASE_PACKAGES, *bootstrap_packages()]))
    checks += [_package(n) for n in names]
    note("Open vSwitch")
    checks += _ovs()
    note("kernel features")
    if root:
        checks += kernel_checks()
    else:
        checks += [
            Check(n, None, "not checked: needs root")
            for n in ["kernel: network namespaces", *KERNEL_RULESETS]
        ]
    note("Python packages")
    checks += python_checks()
    return checks


def scenarios(checks: list[Check]) -> dict[str, list[str]]:
    """Scenario -> the checks it needs that failed or could not run (empty: it can run)."""
    by_name = {c.name: c for c in checks}
    python = [c.name for c in checks if c.name.startswith("python ") and c.name != "python os-ken"]
    out = {}
    for scenario, extra in SCENARIO_NEEDS.items():
        needs = list(dict.fromkeys([*BASE_NEEDS, *python, *extra]))
        out[scenario] = [n for n in needs if n in by_name and not by_name[n].ok and not by_name[n].optional]
    return out
