"""Deferral, session sync's option (pfsync's `defer`, for conntrackd): a firewall holds
each new session's SYN until the peer's kernel holds the entry conntrackd copies, and
the SYN-ACK of a session whose SYN crossed the peer until the peer's entry has seen that
reply (else the client's next packet, crossing the peer, is dropped there as invalid),
each for a bounded wait. Part of session sync (`Firewall.start_sync(defer=True)`), not a
device of its own: it keeps no sessions.

Its parts: the netfilter hold (`lab/render/sync_defer.py`: a postrouting base chain after
conntrack's confirm, jumping to an NFQUEUE) and the agent (`lab/agents/sync_defer.py`),
an owned process ended with its case, whose log is the evidence (one line per packet let
go: why, how long held).

What this kernel showed (a router namespace, `conntrack -E` while a packet was queued):
the base chain at priority INT_MAX made *before* conntrack's hooks runs after confirm
(the NEW event comes while the packet is held); made after them, it runs before confirm
(the NEW event comes only once the packet is let go). Hence `install_hold`, at the
firewall's start, before its first ruleset.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.config import refuse
from lab.devices.base import Runner, daemon
from lab.errors import LabError
from lab.render.sync_defer import (
    AGENT_PORT,
    HOLD,
    QUEUE,
    TABLE,
    base_chain,
    hold_rule,
    hold_target,
    no_hold_rule,
)

if TYPE_CHECKING:
    from lab.procs import Proc

MAX_TIMEOUT = 1.0  # s: a longer hold would outlast the SYN retransmission it replaces


@dataclass(frozen=True)
class DeferSettings:
    """The deferring agent's settings: its and the peer's address on the sync link, the
    interfaces whose new sessions are held, the longest hold and the most held at once."""

    local: str
    peer: str
    interfaces: tuple[str, ...]
    # s: just under the client's first SYN retransmission (1 s), past which holding is pointless;
    # 0.25 s was too short with another lab beside it (a SYN held 250 ms: let go, raced)
    timeout: float = 0.9
    limit: int = 128

    def problems(self) -> list[str]:
        found = []
        if not 0 < self.timeout <= MAX_TIMEOUT:
            found.append(f"defer timeout {self.timeout} s: must be above 0 and at most {MAX_TIMEOUT} s")
        if self.limit < 1:
            found.append(f"defer limit {self.limit}: must be at least 1")
        if not self.interfaces:
            found.append("defer: no interfaces to hold new sessions on")
        return found


def install_hold(runner: Runner, node: str) -> bool:
    """At the firewall's start, before its first ruleset: the empty base chain and the
    NFQUEUE chain it will jump to. False (and nothing made) without iptables-nft: then
    deferral is refused when asked for, and the rest of the lab runs as before."""
    if shutil.which("iptables-nft") is None:
        return False
    for argv in hold_target():
        runner.run(node, argv)
    path = runner.paths.root / f"{node}-defer-chain.nft"
    path.write_text(base_chain())
    runner.run(node, ["nft", "-f", str(path)])
    return True


class Deferral:
    """The hold's rules and agent on `node` (started and stopped with session sync)."""

    def __init__(self, runner: Runner, node: str, installed: bool):
        self.runner, self.node, self.installed = runner, node, installed
        self.name = f"{node}-sync-defer"
        self.proc: Proc | None = None
        self.settings: DeferSettings | None = None

    def start(self, settings: DeferSettings) -> Proc:
        """Check, load the rule (`nft -c` first), start the agent, ready on its line."""
        refuse(settings.problems(), f"firewall {self.node}")
        if not self.installed:
            raise LabError(f"firewall {self.node}: deferral needs iptables-nft: run scripts/bootstrap.sh")
        if importlib.util.find_spec("netfilterqueue") is None:
            raise LabError("NetfilterQueue is not installed: run scripts/bootstrap.sh")
        self.stop()
        path = self.runner.paths.root / f"{self.node}-defer-rule.nft"
        path.write_text(no_hold_rule() + hold_rule(settings.interfaces))
        self.runner.run(self.node, ["nft", "-c", "-f", str(path)])
        argv = [sys.executable, "-m", "lab.agents.sync_defer", "--local", settings.local]
        argv += ["--peer", settings.peer, "--port", str(AGENT_PORT), "--queue", str(QUEUE)]
        argv += ["--timeout", str(settings.timeout), "--limit", str(settings.limit)]
        # The agent binds the queue before it says ready; until then packets pass (bypass).
        self.proc = daemon(self.runner.start(self.node, argv, self.name, ready=r'"event": "ready"'))
        self.runner.run(self.node, ["nft", "-f", str(path)])
        self.settings = settings
        return self.proc

    def stop(self) -> None:
        """The rule out, then the agent ended by PID (its log stays: the evidence)."""
        if self.installed:
            path = self.runner.paths.root / f"{self.node}-defer-off.nft"
            path.write_text(no_hold_rule())
            self.runner.run(self.node, ["nft", "-f", str(path)])
        if self.proc is not None:
            self.runner.stop(self.proc)
        self.settings = None

    def running(self) -> bool:
        return self.proc is not None and not self.proc.stopped and self.proc.running()

    def records(self) -> list[dict[str, Any]]:
        """The agent's `released` lines: one per packet let go (session, why, held_ms)."""
        return released(self.proc.output()) if self.proc is not None else []

    def counters(self) -> Counter[str]:
        """Packets let go so far by why (ack, timeout, overflow, peer down)."""
        return Counter(r["why"] for r in self.records())

    def kernel_queued(self) -> int:
        """Packets the kernel sent to the hold (the NFQUEUE rule's counter)."""
        out = self.runner.run(self.node, ["nft", "-j", "list", "chain", "ip", TABLE, HOLD], merge=False)
        return sum(
            int(e["counter"]["packets"])
            for item in json.loads(out)["nftables"]
            if "rule" in item
            for e in item["rule"]["expr"]
            if "counter" in e
        )


def released(log: str) -> list[dict[str, Any]]:
    """The `released` records of an agent's log (other lines skipped)."""
    found = []
    for line in log.splitlines():
        if '"released"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "released":
            found.append(record)
    return found
