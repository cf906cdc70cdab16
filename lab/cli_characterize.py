"""`sessionlab characterize`: a session device's behaviour profile (S6), of the lab's own
firewall or of a device the lab did not build. Every input is checked before anything is
built (the device's ports, its SSH host key, the bounds and how long they would take);
then `lab.characterize.run` builds the lab around the device and writes the run folder."""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from lab.characterize.target import PROBES
from lab.cli_common import EXIT_FAILED, RESULTS, console
from lab.cli_run import SSH_OPTIONS
from lab.errors import ConfigError, LabError

# Bounds' fields as the options that set them: its problems are told in the options' words.
OPTION_OF = {
    "tcp_max_s": "--tcp-max",
    "udp_max_s": "--udp-max",
    "parallel": "--parallel",
    "app_timeout_s": "--app-timeout",
    "capacity_sessions": "--capacity",
    "tcp_ports": "--tcp-port",
    "probes": "--only",
}
# The searches that make a characterization long, by probe: the bound to name and what to change.
LEVERS = {
    "tcp": ("tcp_max_s", "lower --tcp-max or raise --parallel"),
    "udp": ("udp_max_s", "lower --udp-max or raise --parallel"),
}

HELP = """Measure a session device's behaviour from traffic (TCP and UDP idle timeouts,
what it does at expiry, mid-stream pick-up, NAT, FTP, capacity) and write profile.json,
profile.md and plots into a new run folder under --results.

\b
The device (default: the lab's own firewall with its default policy):
  --policy FILE.toml   the lab's own firewall with this policy (see `policy FILE`)
  --port inside=IFACE --port outside=IFACE
      a device the lab did not build, by two interfaces of the root namespace (a VM's
      second NIC, a local VM's tap), attached to the lab's switches as they are:
        sessionlab characterize --port inside=ens4 --port outside=ens5
  --netns NAME --port inside=IF --port outside=IF
      a device in a network namespace someone set up: the lab creates one veth per port
      into NAME, under these names (up, no address), and deletes them at the end:
        sessionlab characterize --netns box --port inside=in0 --port outside=out0
An interface must exist, not be loopback and not be in use (a bridge's or bond's port,
an Open vSwitch port, a lab's own, or carrying an address in the lab's 10.0.0.0/8).
The lab never configures, restarts or cleans a device it did not build: it plugs its
ports, sends traffic and reads; `sessionlab clean` never touches it.

\b
Its session table (corroboration: every verdict comes from traffic first):
  --driver none    (default) traffic only; the table is not read
  --driver linux --ssh root@192.0.2.5[:22]
      `conntrack -L` and `conntrack -S` over SSH (they need root on the device), by key
      or agent, never a password. The host key is checked against --known-hosts: an
      unknown key is refused before anything is built (--accept-new trusts a new one).
The lab's own firewall's table is read by the lab itself: --driver is for a device the
lab did not build.

\b
The device's addresses, which the lab's hosts use as their gateways (the lab's plan:
inside 10.0.1.0/24 with the client at .10, outside 10.0.2.0/24 with the servers at .10,
.20 and .21):
  --inside-gw   (default 10.0.1.1) the device's inside address, in 10.0.1.0/24
  --outside-gw  (default 10.0.2.1) its outside address, in 10.0.2.0/24
A device the lab did not build must already have these on its ports.

\b
Bounds and the estimate: the idle timeouts are searched with --parallel sessions per
round up to --tcp-max / --udp-max seconds, then narrowed to 1 s or 2 %; a round lasts
its longest idle time plus --app-timeout. The defaults (120 s) suit a lab; a real box
keeps TCP sessions for hours (RFC 5382 asks at least 2 h 4 min: --tcp-max 9000), and
then the search takes hours too. The estimate (worst case) is printed before anything
starts, and bounds that would take more than 24 h are refused; --dry-run prints the plan
and the estimate and stops.

Exit status: 0 done, 1 the characterization failed (the lab is removed), 2 bad input
(one line, nothing built or attached), 130 interrupted.
"""


def _value(option: str, kind: type, default: Any, metavar: str, text: str) -> Any:
    """An option with a default shown in --help (checked by Bounds or the plan, not click)."""
    return click.option(option, type=kind, default=default, show_default=True, metavar=metavar, help=text)


@click.command(help=HELP, short_help="Profile a session device: timeouts, expiry, NAT, FTP, capacity (S6).")
@click.option(
    "--policy",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="policy (TOML) for the lab's own firewall",
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="ROLE=IFACE",
    help="a port of a device the lab did not build: inside=IFACE and outside=IFACE",
)
@click.option(
    "--netns", metavar="NAME", help="the device's network namespace: --port names the veths made into it"
)
@click.option("--name", help="the device's name in the profile")
@click.option(
    "--driver", metavar="NAME", default="none", show_default=True, help="how its table is read: none, linux"
)
@click.option("--ssh", metavar="USER@HOST[:PORT]", help="where --driver linux reads the table")
@_value("--inside-gw", str, "10.0.1.1", "ADDRESS", "its inside address (10.0.1.0/24)")
@_value("--outside-gw", str, "10.0.2.1", "ADDRESS", "its outside address (10.0.2.0/24)")
@_value("--tcp-max", float, 120.0, "SECONDS", "longest TCP idle time probed")
@_value("--udp-max", float, 120.0, "SECONDS", "longest UDP idle time probed")
@_value("--parallel", int, 8, "N", "probes per round (2-64)")
@_value("--app-timeout", float, 2.0, "SECONDS", "how long a probe waits for its answer")
@_value("--capacity", int, 1000, "N", "concurrent TCP sessions tried at most (1-5000)")
@click.option(
    "--tcp-port",
    "tcp_ports",
    type=int,
    multiple=True,
    metavar="PORT",
    help="a destination port with an idle-timeout search of its own (repeatable)",
)
@click.option("--only", metavar="PROBES", help=f"only these probes, comma-separated ({','.join(PROBES)})")
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    metavar="FOLDER",
    default=RESULTS,
    help="folder of run folders",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="check the input (and the SSH host key), print the plan and estimate, build nothing",
)
@SSH_OPTIONS[2]  # --identity, --accept-new, --known-hosts as `remote` takes them
@SSH_OPTIONS[1]
@SSH_OPTIONS[0]
def characterize(
    policy: Path | None,
    ports: tuple[str, ...],
    netns: str | None,
    name: str | None,
    driver: str,
    ssh: str | None,
    inside_gw: str,
    outside_gw: str,
    tcp_max: float,
    udp_max: float,
    parallel: int,
    app_timeout: float,
    capacity: int,
    tcp_ports: tuple[int, ...],
    only: str | None,
    results: Path,
    dry_run: bool,
    known_hosts: Path,
    accept_new: bool,
    identity: Path | None,
) -> int:
    from lab.characterize.attach import attachment
    from lab.characterize.run import Bounds, Target, characterize_run
    from lab.config import load_policy
    from lab.devices.drivers import driver_from
    from lab.preflight import check_host

    names = list(PROBES) if only is None else [n.strip() for n in only.split(",") if n.strip()]
    # in the order they run; an unknown name is kept for Bounds.problems() to name
    probes = (*[p for p in PROBES if p in names], *[n for n in dict.fromkeys(names) if n not in PROBES])
    bounds = Bounds(
        tcp_max_s=tcp_max,
        udp_max_s=udp_max,
        parallel=parallel,
        app_timeout_s=app_timeout,
        capacity_sessions=capacity,
        tcp_ports=tuple(sorted(set(tcp_ports))),
        probes=probes,
    )
    problems = [] if probes else [f"--only {only!r}: name at least one probe ({', '.join(PROBES)})"]
    problems += _input_problems(policy, ports, netns, driver, ssh, tcp_ports, probes)
    problems += gateway_problems(inside_gw, outside_gw)
    problems += bounds_problems(bounds)
    if problems:
        raise ConfigError(problems)
    firewall_policy = load_policy(policy) if policy is not None else None
    attached = attachment(ports, netns) if ports or netns else None  # reads `ip`, changes nothing
    if not dry_run:
        check_host()
    # Connecting checks the host key: an unknown one is refused here, before anything is built.
    table = driver_from(driver, ssh, known_hosts, identity, accept_new)
    try:
        if name is None:
            name = "lab firewall" if attached is None else attached.netns or "device"
        target = Target(
            policy=firewall_policy,  # None: the lab's firewall with its default policy
            attachment=attached,
            driver=table,
            inside_gw=inside_gw,
            outside_gw=outside_gw,
            name=name,
        )
        for line in plan_lines(target, policy, bounds):
            console.print(line)
        if dry_run:
            console.print("dry run: nothing built")
            return 0
        return _characterize(target, bounds, results, characterize_run)
    finally:
        table.close()


def _characterize(target: Any, bounds: Any, results: Path, characterize_run: Any) -> int:
    """Run the characterization into a new run folder; print where the profile is and its findings."""
    from lab.characterize.findings import label, show
    from lab.results import new_run

    folder = new_run(results)
    out = folder / "characterize"
    console.print(f"sessionlab characterize {folder.name}: {target.name}")
    try:
        profile = characterize_run(target, bounds, out)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # the terminal may be gone
            console.print(f"interrupted: the lab is removed; what was written is in {out}")
        raise
    except ConfigError:
        raise
    except LabError as exc:
        message = " ".join(str(exc).split())
        print(f"sessionlab: characterization failed: {message} (lab removed; logs in {out})", file=sys.stderr)
        return EXIT_FAILED
    findings = Table(title=f"{target.name}: what was measured")
    findings.add_column("behaviour", overflow="fold")
    findings.add_column("measured", overflow="fold")
    for key, finding in profile.findings():
        findings.add_row(label(key), show(key, finding))
    console.print(findings)
    console.print(f"profile: {out / 'profile.md'}")
    console.print(f"data:    {out / 'profile.json'}")
    return 0


# --- checks (pure: nothing here reads the machine) ------------------------------------------
def _input_problems(
    policy: Path | None,
    ports: Sequence[str],
    netns: str | None,
    driver: str,
    ssh: str | None,
    tcp_ports: Sequence[int],
    probes: Sequence[str],
) -> list[str]:
    """The options that do not go together, and a malformed --ssh; one line each."""
    from lab.devices.drivers import DRIVERS, driver_from
    from lab.remote import Host

    problems = []
    foreign = bool(ports or netns)
    if driver not in DRIVERS:
        problems.append(f"--driver {driver}: no such driver (known: {', '.join(sorted(DRIVERS))})")
    elif ssh is None:  # nothing to connect to: the driver's own check of its options only
        try:
            driver_from(driver).close()
        except ConfigError as exc:
            problems += exc.problems
    if driver in DRIVERS and (driver != "none" or ssh is not None) and not foreign:
        problems.append(
            "--driver/--ssh read the table of a device the lab did not build (give --port or --netns); "
            "the lab reads its own firewall's table itself"
        )
    if policy is not None and foreign:
        what = "--netns" if netns else "--port"
        problems.append(
            f"--policy and {what}: a policy is for the lab's own firewall, not a device it did not build"
        )
    if ssh is not None:
        try:
            Host.parse(ssh)
        except ConfigError:
            problems.append(f"--ssh {ssh}: expected user@host[:port]")
    if tcp_ports and "tcp" not in probes:
        problems.append("--tcp-port: the tcp probe is not in --only")
    return problems


def gateway_problems(inside_gw: str, outside_gw: str) -> list[str]:
    """The device's addresses against the lab's plan (topologies/s6_characterize.py): each
    an IPv4 address of its network, not the network's own or broadcast address, and not
    one of the lab's hosts."""
    from lab.topology import plan

    s6 = plan("s6")
    taken = {a for group in s6.hosts.values() for a in group.values()} | {s6.addresses["stun-alt"]}
    problems = []
    for option, value, side in (
        ("--inside-gw", inside_gw, "inside"),
        ("--outside-gw", outside_gw, "outside"),
    ):
        network = ipaddress.IPv4Network(s6.networks[side])
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            problems.append(f"{option} {value}: not an IPv4 address")
            continue
        if address not in network:
            problems.append(f"{option} {value}: not in {network}, the lab's {side} network")
        elif address in (network.network_address, network.broadcast_address):
            problems.append(f"{option} {value}: the {side} network's own address, not a host's")
        elif value in taken:
            problems.append(
                f"{option} {value}: a lab host's address (the lab's hosts: {', '.join(sorted(taken))})"
            )
    return problems


def bounds_problems(bounds: Any) -> list[str]:
    """`Bounds.problems()` in the options' words; bounds that would take more than a day
    named by the bound whose search takes longest, with what to change."""
    problems = []
    for problem in bounds.problems():
        name, _, rest = problem.partition(": ")
        if name in OPTION_OF:
            problems.append(f"{OPTION_OF[name]}: {rest}")
        elif name != "estimate":
            problems.append(problem)
    if not problems and (why := bounds.too_long()) is not None:
        searches = {p: replace(bounds, probes=(p,)).estimate_seconds() for p in LEVERS if p in bounds.probes}
        if not searches:
            return [f"the characterization would take {why}"]
        field, lever = LEVERS[max(searches, key=lambda p: searches[p])]
        days = bounds.estimate_seconds() / 86400
        problems.append(
            f"{OPTION_OF[field]} {getattr(bounds, field):.10g}: the characterization would take about "
            f"{days:.1f} days (more than 24 h): {lever}"
        )
    return problems


def plan_lines(target: Any, policy: Path | None, bounds: Any) -> list[str]:
    """What will be characterized, how it is attached and read, the bounds and the estimate."""
    from lab.characterize.bisect import duration_words

    device = target.attachment
    if device is None:
        lines = [f"device: the lab's own firewall, {f'policy {policy}' if policy else 'its default policy'}"]
        lines.append("attached: built by the lab; its table read by the lab")
    else:
        lines = [
            f"device: {target.name}, which the lab did not build (never configured, restarted or cleaned)"
        ]
        ports = ", ".join(f"{role}={iface}" for role, iface in device.ports.items())
        if device.netns:
            lines.append(f"attached: veths {ports} made into netns {device.netns}, deleted at the end")
        else:
            lines.append(f"attached: root-namespace interfaces {ports}, attached as they are")
        lines.append(f"its table: {target.driver.table}")
    lines.append(f"its addresses: inside {target.inside_gw}, outside {target.outside_gw}")
    shown = {
        "tcp": f"TCP idle up to {bounds.tcp_max_s:.10g} s"
        + (f" (and per port {', '.join(map(str, bounds.tcp_ports))})" if bounds.tcp_ports else ""),
        "udp": f"UDP idle up to {bounds.udp_max_s:.10g} s",
        "capacity": f"capacity up to {bounds.capacity_sessions} sessions",
    }
    chosen = [shown[p] for p in bounds.probes if p in shown]
    rounds = f"{bounds.parallel} probes per round, answers awaited {bounds.app_timeout_s:g} s"
    lines.append(f"probes: {', '.join(bounds.probes)}; " + "; ".join([*chosen, rounds]))
    lines.append(f"estimate: at most {duration_words(bounds.estimate_seconds())} (worst case)")
    return lines
