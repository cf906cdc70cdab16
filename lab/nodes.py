"""Lab nodes: what runs inside a namespace beyond a plain host."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mininet.node import Node

from lab import conntrack
from lab.config import FirewallPolicy, validate_policy
from lab.errors import CommandError, ConfigError, LabError
from lab.render.nftables import AGENT_MARK, TABLE, render_ruleset, render_sysctls

if TYPE_CHECKING:
    from lab.net import Lab, Proc

log = logging.getLogger(__name__)


class Firewall(Node):
    """A Linux router whose forwarding is a stateful nftables policy.

    Topology parameters: `inside` and `outside`, the names of its two interfaces.
    """

    def config(  # noqa: N802
        self,
        inside: str = "fw-in",
        outside: str = "fw-out",
        sync: str | None = None,
        neighbors: dict[str, dict[str, str]] | None = None,
        **params: Any,
    ) -> Any:
        result = super().config(**params)
        self.inside = inside
        self.outside = outside
        self.sync = sync  # the interface to a peer firewall, for session sync
        for intf, table in (neighbors or {}).items():
            for address, mac in table.items():
                self.cmd(f"ip neigh replace {address} lladdr {mac} dev {intf} nud permanent")
        self.policy: FirewallPolicy | None = None
        self.lab: Lab | None = None
        self.agent: Proc | None = None
        self.policy_loads = 0
        self.syncd: Proc | None = None
        return result

    def lab_start(self, lab: Lab) -> None:
        """Called by the Lab once the network is up: load the default policy."""
        self.lab = lab
        names = {i.name for i in self.intfList()}
        missing = [n for n in (self.inside, self.outside) if n not in names]
        if missing:
            raise ConfigError(
                f"firewall {self.name}: no interface {', '.join(missing)} (has {', '.join(sorted(names))})"
            )
        self.apply_policy(FirewallPolicy())

    def _lab(self) -> Lab:
        if self.lab is None:
            raise LabError(f"firewall {self.name} is not part of a running lab")
        return self.lab

    def apply_policy(self, policy: FirewallPolicy) -> Path:
        """Render, check (`nft -c`) and load a policy atomically; returns the ruleset file."""
        lab = self._lab()
        validate_policy(policy)
        self.policy_loads += 1
        path = lab.paths.root / f"{self.name}-ruleset-{self.policy_loads}.nft"
        path.write_text(render_ruleset(policy, self.inside, self.outside))
        try:
            lab.run(self.name, ["nft", "-c", "-f", str(path)])
        except CommandError as exc:
            raise ConfigError(
                f"firewall {self.name}: nft rejects the rendered policy {path}: {exc.output}"
            ) from None
        for key, value in render_sysctls(policy).items():
            lab.run(self.name, ["sysctl", "-qw", f"{key}={value}"])
        # nft -f is atomic: on an error the old ruleset silently stays, so the code matters.
        lab.run(self.name, ["nft", "-f", str(path)])
        self.policy = policy
        self._set_agent(policy.reset_on_expiry)
        return path

    def _set_agent(self, wanted: bool) -> None:
        lab = self._lab()
        if wanted and self.agent is None:
            argv = [sys.executable, "-m", "lab.agents.expiry_reset", "--mark", str(AGENT_MARK)]
            self.agent = lab.start(self.name, argv, f"{self.name}-expiry-reset", ready=r'"event": "ready"')
        elif not wanted and self.agent is not None:
            lab.stop(self.agent)
            self.agent = None

    def start_sync(self, peer: str, external_cache: bool = False) -> Proc:
        """Run conntrackd (FTFW over the sync interface) in the foreground, owned by the lab."""
        from lab.render.conntrackd import SyncSettings, render_conntrackd

        lab = self._lab()
        if self.sync is None:
            raise ConfigError(f"firewall {self.name}: no sync interface in the topology")
        self.stop_sync()
        local = self.intf(self.sync).IP()
        settings = SyncSettings(local=local, peer=peer, interface=self.sync, external_cache=external_cache)
        path = lab.paths.root / f"{self.name}-conntrackd.conf"
        path.write_text(render_conntrackd(settings, lab.paths.root, self.name))
        socket_path = lab.paths.root / f"{self.name}-conntrackd.ctl"
        self.syncd = lab.start(self.name, ["conntrackd", "-C", str(path)], f"{self.name}-conntrackd")
        lab.wait(
            lambda: socket_path.exists() or self._sync_died(), 10, f"conntrackd on {self.name} to listen"
        )
        return self.syncd

    def _sync_died(self) -> bool:
        if self.syncd is not None and not self.syncd.running():
            raise LabError(f"conntrackd on {self.name} exited: {self.syncd.output().strip()[-300:]}")
        return False

    def stop_sync(self) -> None:
        if self.syncd is not None:
            self._lab().stop(self.syncd)
            self.syncd = None

    def sessions(self) -> list[conntrack.Session]:
        """The session table now."""
        return conntrack.parse_table(self._lab().run(self.name, ["conntrack", "-L"]))

    def flush_sessions(self) -> None:
        self._lab().run(self.name, ["conntrack", "-F"])

    def counters(self) -> dict[str, int]:
        """Packets dropped so far, by reason (the policy's named counters)."""
        out = self._lab().run(self.name, ["nft", "-j", "list", "counters", "table", "inet", TABLE])
        counts = {}
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = int(item["counter"]["packets"])
        return counts
