"""Session sync settings -> conntrackd.conf text. Pure; golden-file tested."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SyncSettings:
    """conntrackd FTFW between two firewalls over a dedicated link.

    external_cache: conntrackd's default keeps the peer's sessions in its own cache and
    writes them to the kernel only at failover; with it off (DisableExternalCache on) the
    peer's sessions go straight into the kernel table, which an active-active pair with
    asymmetric paths needs.
    """

    local: str  # this firewall's sync address
    peer: str  # the peer's sync address
    interface: str
    external_cache: bool = False
    port: int = 3780


def render_conntrackd(settings: SyncSettings, workdir: Path, name: str) -> str:
    """conntrackd.conf for one firewall; its socket, lock and log files live in `workdir`."""
    return f"""General {{
\tHashSize 8192
\tHashLimit 65536
\tLockFile {workdir / f"{name}-conntrackd.lock"}
\tUNIX {{
\t\tPath {workdir / f"{name}-conntrackd.ctl"}
\t}}
\tSyslog off
\tLogFile off
\tNetlinkBufferSize 2097152
\tNetlinkBufferSizeMaxGrowth 8388608
\tFilter From Kernelspace {{
\t\tProtocol Accept {{
\t\t\tTCP
\t\t}}
\t\tAddress Ignore {{
\t\t\tIPv4_address 127.0.0.1
\t\t\tIPv4_address {settings.local}
\t\t\tIPv4_address {settings.peer}
\t\t}}
\t}}
}}
Sync {{
\tMode FTFW {{
\t\tDisableExternalCache {"off" if settings.external_cache else "on"}
\t}}
\tUDP {{
\t\tIPv4_address {settings.local}
\t\tIPv4_Destination_Address {settings.peer}
\t\tPort {settings.port}
\t\tInterface {settings.interface}
\t\tChecksum on
\t}}
}}
"""
