"""`sessionlab`: run lab suites and write the report; check policies; list topologies.

Every error is one line on stderr and exit status 2; nothing is left running.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import NoReturn

from lab.errors import LabError

ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = ROOT / "testcases"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def suites() -> dict[str, list[Path]]:
    """Scenario suite name (s1, ...) -> its modules: testcases/test_<name>_*.py (S4 has
    several: L4 in the kernel and in the switch, L7, redundancy, scale)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(SUITES_DIR.glob("test_s[0-9]*_*.py")):
        found.setdefault(path.stem.split("_")[1], []).append(path)
    return found


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    known = suites()
    chosen = args.suite or list(known)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise LabError(f"unknown suite {', '.join(unknown)} (known: {', '.join(known)})")
    argv = [str(path) for s in chosen for path in known[s]] + [
        "--rootdir",
        str(ROOT),
        "-q",
        "--results-root",
        str(args.results),
    ]
    if args.k:
        argv += ["-k", args.k]
    return int(pytest.main(argv))


def cmd_policy(args: argparse.Namespace) -> int:
    from lab.config import load_policy
    from lab.render.nftables import render_ruleset

    policy = load_policy(Path(args.file))
    sys.stdout.write(render_ruleset(policy, args.inside, args.outside))
    return 0


def cmd_topologies(args: argparse.Namespace) -> int:
    from lab import topology

    for name, path in topology.available().items():
        print(f"{name}\t{path.relative_to(ROOT)}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Build a topology, show its nodes, ping between every pair of hosts, remove it."""
    import tempfile

    from lab import topology
    from lab.net import Lab

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise LabError(f"--param {item!r}: expected key=value")
        params[key] = value
    topo = topology.load(args.topology, **params)
    controller = topology.controller_for(args.topology)
    with (
        tempfile.TemporaryDirectory(prefix="sessionlab-up-") as folder,
        Lab(topo, Path(folder), controller=controller) as running,
    ):
        for node in running.net.hosts:
            name = node.name
            addrs = ", ".join(f"{i.name} {i.IP()}" for i in node.intfList() if i.IP())
            print(f"{name}\t{addrs}")
        loss = running.net.pingAll(timeout=2)
        print(f"ping between all hosts: {loss:g}% lost (a firewall's default policy denies new inbound)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sessionlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run lab suites (default: all) and write results/<run>/report.html")
    run.add_argument("suite", nargs="*", help="suite names, e.g. s1")
    run.add_argument(
        "--results", type=Path, default=ROOT / "results", help="results folder (default: results/)"
    )
    run.add_argument("-k", help="only cases matching this pytest expression")
    run.set_defaults(func=cmd_run)
    policy = sub.add_parser("policy", help="check a firewall policy (TOML) and print its nftables ruleset")
    policy.add_argument("file")
    policy.add_argument("--inside", default="fw-in", help="inside interface name")
    policy.add_argument("--outside", default="fw-out", help="outside interface name")
    policy.set_defaults(func=cmd_policy)
    up = sub.add_parser("up", help="build a topology, ping across it, remove it")
    up.add_argument("topology")
    up.add_argument("--param", action="append", default=[], help="topology parameter key=value")
    up.set_defaults(func=cmd_up)
    topos = sub.add_parser("topologies", help="list the topologies")
    topos.set_defaults(func=cmd_topologies)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (and SIGINT, even where a shell started us ignoring it) end a run like
    # Ctrl-C, so the lab's cleanup runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.func(args))
    except LabError as exc:
        print(f"sessionlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sessionlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
