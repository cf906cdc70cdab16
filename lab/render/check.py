"""A rendered ruleset checked by nft itself, outside any lab: `nft -c` in a throwaway
network namespace of its own (`unshare --net`: the host's ruleset is neither read nor
touched, and the namespace ends with the process, so nothing is left to remove).

Its interfaces (`iifname "fw-in"`) are names nft does not look up; a netdev chain's
`device` must exist, so those are created first as veth pairs inside the namespace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence

from lab.errors import ConfigError, LabError

CHECK_TIMEOUT = 30.0  # s; nft answers in tens of milliseconds (module loads included)
# nft's error lines: "<file>:<line>:<columns>: Error: <message>", then the line and a caret.
_ERROR = re.compile(r"^(?P<file>.*?):(?P<line>\d+):(?P<cols>[\d-]+): Error: (?P<message>.*)$")
# Make each device (a veth pair: no module beyond veth), then nft reads the ruleset on stdin.
_SCRIPT = (
    'i=0; for dev in "$@"; do ip link add "$dev" type veth peer name "slchk$i" || exit 125; '
    "i=$((i + 1)); done; exec nft -c -f -"
)


def nft_message(output: str) -> str | None:
    """nft's first complaint as one line (`line 24 (ct helper tftp_69 {): Could not process
    rule: No such file or directory`, and how many more), or None when it made none."""
    lines = output.splitlines()
    found = [(i, m) for i, line in enumerate(lines) if (m := _ERROR.match(line))]
    if not found:
        return None
    i, match = found[0]
    text = lines[i + 1].strip() if i + 1 < len(lines) else ""
    where = f"line {match['line']}" + (f" ({text})" if text else "")
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"{where}: {match['message']}{more}"


def nft_check(text: str, source: str, devices: Sequence[str] = ()) -> None:
    """Check ruleset `text` with `nft -c`; a rejection is a ConfigError naming `source`
    (the file it was rendered from) with nft's own message; LabError if nft cannot run."""
    for tool in ("nft", "unshare", *(("ip",) if devices else ())):
        if shutil.which(tool) is None:
            from lab.doctor import tool_missing  # only then: doctor's imports cost 0.1 s

            raise LabError(f"cannot check {source}'s ruleset with nft -c: {tool_missing(tool)}")
    # Without root, a user namespace gives the new network namespace its CAP_NET_ADMIN.
    unshare = ["unshare", "--net", *(["--map-root-user"] if os.geteuid() != 0 else [])]
    argv = [*unshare, "sh", "-c", _SCRIPT, "sh", *devices]
    try:
        result = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LabError(
            f"cannot check {source}'s ruleset: nft -c gave no answer in {CHECK_TIMEOUT:g} s"
        ) from None
    if result.returncode == 0:
        return
    message = nft_message(result.stderr)
    if message is None:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise LabError(f"cannot check {source}'s ruleset with nft -c: {last}")
    raise ConfigError(f"{source}: nft rejects the rendered ruleset: {message}")
