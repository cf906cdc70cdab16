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
from pathlib import Path

from lab.catalog import ROOT
from lab.errors import LabError
from lab.procs import host_run
from lab.records import RECORDS, records

BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
RESULTS = ROOT / "results"  # the CLI's default folder of run folders (lab.cli_common)
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
    "s5": ["package hping3", "package nmap", "kernel: SYN proxy", "kernel: MSS clamp"],
    "s6": ["package coturn", "package vsftpd", "package openssh-server", "package socat", "kernel: NAT"],
}
BASE_NEEDS = [
    "root",
    "Open vSwitch running",
    "Open vSwitch userspace datapath",
    "tools on PATH",
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
    "kernel: MSS clamp": """table inet t {
  chain c { type filter hook forward priority 0; tcp flags syn tcp option maxseg size set rt mtu
  }
}""",
}


# Where Debian keeps administration tools (nft, ip, tc, conntrack, ethtool); a plain `su`
# or some cron and service environments leave them off PATH.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
SYSTEM_BIN = (*SBIN, "/usr/local/bin", "/usr/bin", "/bin")  # where a tool off PATH is looked for


def path_fix(folders: list[str]) -> str:
    """The fix for tools in `folders` that PATH lacks (a plain `su` keeps the user's PATH)."""
    return f'use `su -` or `sudo -i`, or export PATH="$PATH:{":".join(folders)}"'


def _outside_path(name: str, path: str | None = None) -> str | None:
    """The system folder holding tool `name` when PATH lacks that folder (else None)."""
    folders = (os.environ.get("PATH", "") if path is None else path).split(os.pathsep)
    for folder in SYSTEM_BIN:
        found = os.path.join(folder, name)
        if folder not in folders and os.path.isfile(found) and os.access(found, os.X_OK):
            return folder
    return None


def tool_missing(name: str, path: str | None = None) -> str:
    """Why a tool is not found on PATH, in a line: where it is when PATH lacks its folder."""
    folder = _outside_path(name, path)
    if folder is not None:
        return f"{name} is not on PATH: it is {folder}/{name}, and PATH lacks {folder}"
    return f"{name} is not installed (not on PATH)"


@dataclass(frozen=True)
class Check:
    """One finding: `ok` None means not checked (a prerequisite failed); `optional`
    findings never stop a scenario; `status`, where set, is the word to show for a finding
    that is neither ok nor missing (leftover lab records, low disk)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    optional: bool = False
    status: str = ""


def bootstrap_packages(path=BOOTSTRAP) -> list[str]:  # type: ignore[no-untyped-def]
    """The Debian packages scripts/bootstrap.sh installs (its PACKAGES array): one list."""
    found = re.search(r"PACKAGES=\(([^)]*)\)", path.read_text())
    if not found:
        raise LabError(f"{path}: no PACKAGES=( ... ) list")
    return found.group(1).split()


def _package(name: str) -> Check:
    dpkg = _find("dpkg-query")
    if dpkg is None:  # not Debian: the packages' names are Debian's
        return Check(f"package {name}", None, "not checked: no dpkg-query", f"install {name}'s equivalent")
    result = subprocess.run([dpkg, "-W", "-f=${Status} ${Version}", name], capture_output=True, text=True)
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


def _find(name: str) -> str | None:
    """A tool's full path: on PATH, or in an sbin folder PATH lacks (the "tools on PATH"
    check says so), so a kernel feature is not reported missing for want of PATH."""
    found = shutil.which(name)
    if found is None:
        found = next((f"{d}/{name}" for d in SYSTEM_BIN if os.access(f"{d}/{name}", os.X_OK)), None)
    return found


# The tools the lab runs by name (from PATH), with the package that brings each.
LAB_TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "nft": "nftables",
    "conntrack": "conntrack",
    "ethtool": "ethtool",
    "sysctl": "procps",
    "ping": "iputils-ping",
    "tcpdump": "tcpdump",
    "ovs-vsctl": "openvswitch-switch",
    "ovs-ofctl": "openvswitch-switch",
    "mnexec": "mininet",
}


def tools_check(path: str | None = None) -> Check:
    """Whether every tool the lab runs is on PATH; for one that is not, where it is."""
    missing = [name for name in LAB_TOOLS if shutil.which(name, path=path) is None]
    if not missing:
        return Check("tools on PATH", True, f"{len(LAB_TOOLS)} found")
    where: dict[str, list[str]] = {}
    for name in missing:
        where.setdefault(_outside_path(name, path) or "", []).append(name)
    absent = where.pop("", [])
    details = [f"{', '.join(names)} in {folder}, which PATH lacks" for folder, names in where.items()]
    details += [f"{', '.join(absent)} not installed"] if absent else []
    fixes = [path_fix(list(where))] if where else []
    packages = sorted({LAB_TOOLS[n] for n in absent})
    fixes += [f"apt-get install -y {' '.join(packages)}  (or {FIX_ALL})"] if packages else []
    return Check("tools on PATH", False, "; ".join(details), "; ".join(fixes))


def _ovs() -> list[Check]:
    fix = f"/usr/share/openvswitch/scripts/ovs-ctl start  (or {FIX_ALL})"
    if shutil.which("ovs-vsctl") is None:
        not_checked = "not checked: Open vSwitch is not installed"
        return [
            Check(
                "Open vSwitch running",
                False,
                tool_missing("ovs-vsctl"),
                f"apt-get install -y openvswitch-switch  (or {FIX_ALL})",
            ),
            Check("Open vSwitch userspace datapath", None, not_checked, "install Open vSwitch first"),
        ]
    try:
        host_run(["ovs-vsctl", "--timeout=3", "show"], timeout=10)
    except LabError as exc:
        return [
            Check("Open vSwitch running", False, str(exc).splitlines()[0][:80], fix),
            Check(
                "Open vSwitch userspace datapath",
                None,
                "not checked: Open vSwitch is not running",
                "start Open vSwitch first (above)",
            ),
        ]
    types = host_run(["ovs-vsctl", "--timeout=3", "get", "Open_vSwitch", ".", "datapath_types"], check=False)
    netdev = "netdev" in types
    return [
        Check("Open vSwitch running", True, "ovs-vswitchd answers"),
        Check(
            "Open vSwitch userspace datapath",
            netdev,
            types.strip() or "unknown",
            ""
            if netdev
            else "apt-get install --reinstall openvswitch-switch  (Debian's has the netdev datapath)",
        ),
    ]


# What to do when a kernel feature is missing: the module that brings it (built in, no
# module exists, which is why each is tried rather than looked for).
KERNEL_FIXES = {
    "kernel: network namespaces": "a kernel with CONFIG_NET_NS; in a container, give it CAP_SYS_ADMIN",
    "kernel: connection tracking": "modprobe nf_conntrack  (or a kernel with CONFIG_NF_CONNTRACK)",
    "kernel: FTP conntrack helper": "modprobe nf_conntrack_ftp  (or CONFIG_NF_CONNTRACK_FTP)",
    "kernel: NAT": "modprobe nft_nat nft_masq  (or CONFIG_NFT_NAT, CONFIG_NFT_MASQ)",
    "kernel: SYN proxy": "modprobe nft_synproxy  (or CONFIG_NFT_SYNPROXY)",
    "kernel: MSS clamp": "modprobe nft_exthdr nft_rt  (or CONFIG_NFT_EXTHDR, CONFIG_NFT_RT)",
    "kernel: HTB rate limits": "modprobe sch_htb  (or CONFIG_NET_SCH_HTB)",
    "kernel: netem": "modprobe sch_netem  (or CONFIG_NET_SCH_NETEM); optional",
}
KERNEL_CHECKS = ["kernel: network namespaces", *KERNEL_RULESETS, "kernel: HTB rate limits", "kernel: netem"]


def _not_checked(names: list[str], why: str, fix: str) -> list[Check]:
    return [Check(n, None, f"not checked: {why}", fix, optional=n == "kernel: netem") for n in names]


def _in_namespace(
    ip: str, ns: str, argv: list[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ip, "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=20
    )


def kernel_checks() -> list[Check]:
    """Each kernel feature, tried in a throwaway namespace (tools by full path where PATH
    lacks their folder: the feature is the kernel's, PATH has its own check)."""
    tools = {name: _find(name) for name in ("ip", "nft", "tc")}
    if tools["ip"] is None:
        return _not_checked(KERNEL_CHECKS, tool_missing("ip"), "apt-get install -y iproute2")
    ip, nft, tc = tools["ip"], tools["nft"] or "", tools["tc"] or ""  # "": not found
    ns = f"sldoc{secrets.token_hex(3)}"
    made = subprocess.run([ip, "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        detail = made.stderr.strip()[:80] or "ip netns add failed"
        first = Check(KERNEL_CHECKS[0], False, detail, KERNEL_FIXES[KERNEL_CHECKS[0]])
        return [first, *_not_checked(KERNEL_CHECKS[1:], "no namespace", "network namespaces first (above)")]
    found = [Check("kernel: network namespaces", True, "ip netns add works")]
    try:
        if not nft:
            found += _not_checked(list(KERNEL_RULESETS), tool_missing("nft"), "apt-get install -y nftables")
        for name, ruleset in KERNEL_RULESETS.items() if nft else ():
            result = _in_namespace(ip, ns, [nft, "-f", "-"], ruleset)
            _in_namespace(ip, ns, [nft, "flush", "ruleset"])
            ok = result.returncode == 0
            detail = "loads" if ok else (result.stderr.strip().splitlines() or ["fails"])[0][:80]
            found.append(Check(name, ok, detail, "" if ok else KERNEL_FIXES[name]))
        qdiscs = [
            ("kernel: HTB rate limits", ["htb", "default", "1"], False),
            ("kernel: netem", ["netem", "delay", "1ms"], True),
        ]
        if not tc:
            found += _not_checked([q[0] for q in qdiscs], tool_missing("tc"), "apt-get install -y iproute2")
            qdiscs = []
        elif qdiscs:
            _in_namespace(ip, ns, [ip, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
            _in_namespace(ip, ns, [ip, "link", "set", "d0", "up"])
        for name, qdisc, optional in qdiscs:
            result = _in_namespace(ip, ns, [tc, "qdisc", "replace", "dev", "d0", "root", *qdisc])
            ok = result.returncode == 0
            detail = "works" if ok else "missing"
            if optional and not ok:
                detail = "missing: impaired links use the lab's relay element instead"
            found.append(Check(name, ok, detail, "" if ok else KERNEL_FIXES[name], optional=optional))
    finally:
        subprocess.run([ip, "netns", "del", ns], capture_output=True)
    return found


MIN_FREE_BYTES = 2 * 10**9  # a run keeps captures and plots: a few hundred MB at most


def host_checks(results: Path) -> list[Check]:
    """What the machine is: its kernel, its CPUs, and the space left where runs go."""
    uname = os.uname()
    usable = len(os.sched_getaffinity(0))
    checks = [
        Check("kernel", True, f"Linux {uname.release} {uname.machine}"),
        Check("CPUs", True, f"{os.cpu_count()} ({usable} usable by this process)"),
    ]
    folder = next(p for p in (results, *results.parents) if p.exists())  # runs go there once made
    usage = shutil.disk_usage(folder)
    mount = next(p for p in (folder, *folder.parents) if os.path.ismount(p))
    detail = f"{usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB on {mount} (holds {results})"
    low = usage.free < MIN_FREE_BYTES
    fix = f"free space on {mount}, or `sessionlab clean --runs` (old run folders)" if low else ""
    checks.append(Check("free disk", not low, detail, fix, optional=True, status="low" if low else ""))
    return checks


def punctuality_check(seconds: float = 1.0) -> Check:
    """Timer lateness, CPU steal and how busy the CPUs are, over `seconds`: beyond what the
    suites' timing margins allow, a run's verdicts may come from the machine, not the device."""
    from lab.machine_load import measure

    reading = measure(seconds)
    problems = reading.problems()
    if not problems:
        return Check("punctuality", True, reading.summary())
    fix = (
        "run the suites when nothing else keeps the CPUs busy (`top`); on a VM, a host with "
        "less contention (steal) or more vCPUs; with two labs side by side, `sessionlab run -n 1`"
    )
    return Check("punctuality", False, f"{'; '.join(problems)} ({reading.summary()})", fix, True, "late")


def records_check(folder: Path = RECORDS) -> Check:
    """Labs whose run was killed and left bridges, namespaces or processes behind."""
    found = records(folder)
    orphaned = [r.tag for r in found if r.orphaned()]
    if not orphaned:
        running = len(found)
        return Check("orphaned lab records", True, f"none ({running} lab{'s' * (running != 1)} running)")
    detail = f"{len(orphaned)} lab{'s' * (len(orphaned) != 1)} whose run is gone: {', '.join(orphaned)}"
    fix = "run `sessionlab clean`  (`sessionlab clean --dry-run` shows what it removes)"
    return Check("orphaned lab records", False, detail, fix, optional=True, status="leftover")


OUTSIDE = "lab ranges in the root namespace"


def outside_check() -> Check:
    """Addresses and routes of the lab's ranges in the root namespace (lab/outside.py): a
    killed lab's leftovers, or the machine's own network overlapping the lab's addresses."""
    from lab.outside import covering_routes, lab_ranges, sample_root, violations

    try:
        sample = sample_root(listeners=False)
    except LabError as exc:
        return Check(OUTSIDE, None, f"not checked: {str(exc).splitlines()[0][:80]}", "install iproute2")
    ranges = lab_ranges()
    found = violations(sample, ranges)
    wider = covering_routes(sample.routes, ranges)
    if found:
        shown = "; ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        fix = "`sessionlab clean` (a killed lab's leftovers); else `ip addr del` / `ip route del` them"
        return Check(OUTSIDE, False, shown, fix, optional=True, status="leftover")
    if wider:
        fix = "none for the lab (it reaches nothing outside); its captures' addresses are also the machine's"
        return Check(OUTSIDE, False, "; ".join(wider[:2]), fix, optional=True, status="overlap")
    return Check(OUTSIDE, True, f"none (of {ranges[0]} and {len(ranges) - 1} more ranges)")


def run_checks(progress: Callable[[str], None] | None = None, results: Path = RESULTS) -> list[Check]:
    """Every check, in the order they are shown; `results`: the folder runs are kept in."""
    note = progress or (lambda _: None)
    root = os.geteuid() == 0
    checks = [
        Check(
            "root", root, "uid 0" if root else f"uid {os.geteuid()}", "" if root else "run it as root (sudo)"
        )
    ]
    checks += host_checks(results)
    note("punctuality")
    checks.append(punctuality_check())
    note("packages")
    names = list(dict.fromkeys([*BASE_PACKAGES, *bootstrap_packages()]))
    checks += [_package(n) for n in names]
    checks.append(tools_check())
    note("Open vSwitch")
    checks += _ovs()
    note("kernel features")
    if root:
        checks += kernel_checks()
    else:
        checks += _not_checked(KERNEL_CHECKS, "needs root", "run it as root (sudo)")
    note("Python packages")
    checks += python_checks()
    note("the root namespace")
    checks.append(outside_check())
    note("lab records")
    checks.append(records_check())
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
