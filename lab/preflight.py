"""Before a lab is built: can this machine run one at all? (root, the tools, Open vSwitch)"""

from __future__ import annotations

import os
import shutil

from lab.errors import LabError
from lab.procs import host_run


def check_host() -> None:
    """Refuse early, in one line, when this machine cannot run a lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, Open vSwitch): run it as root")
    for tool in ("mnexec", "ovs-vsctl", "ethtool", "nft", "conntrack", "tcpdump", "ss"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed: run scripts/bootstrap.sh")
    try:
        host_run(["ovs-vsctl", "--timeout=3", "show"])
    except LabError:
        raise LabError("Open vSwitch is not running: run scripts/bootstrap.sh (it starts it)") from None
