"""Early drop for a firewall's own session capacity: runs in the firewall's namespace.

When its table is full (nf_conntrack_max), Linux makes room by dropping a session nobody
has answered yet (not ASSURED: early_drop), so a flood of half-open sessions cannot lock
out the sessions that work. That limit is global and read-only inside a namespace; a lab
firewall's capacity is its own `ct count` rule (`max_sessions`). This agent does the same
at that capacity: every `period_ms` it reads the size of this namespace's table
(nf_conntrack_count) and, at `high` entries or more, deletes the half-open TCP sessions
(SYN_SENT, SYN_RECV) with conntrack. The deletions are also in the firewall's conntrack
event stream, which is the evidence; this agent's report is checked against it.

Prints one JSON line per event: ready, then `early_drop` with the table's size before and
the sessions deleted.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from lab.apps.events import emit, stop_on_sigterm

COUNT = Path("/proc/sys/net/netfilter/nf_conntrack_count")
HALF_OPEN = ("SYN_SENT", "SYN_RECV")
_DELETED = re.compile(r"(\d+) flow entries have been deleted")


def delete_half_open() -> int:
    """Delete every half-open TCP session; how many conntrack deleted."""
    deleted = 0
    for state in HALF_OPEN:
        done = subprocess.run(
            ["conntrack", "-D", "-p", "tcp", "--state", state], capture_output=True, text=True, check=False
        )
        found = _DELETED.search(done.stderr + done.stdout)
        deleted += int(found[1]) if found else 0
    return deleted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--high", type=int, required=True, help="table size that triggers a drop")
    parser.add_argument("--period-ms", type=int, default=20, help="how often the table size is read")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    emit("ready", high=args.high)
    while True:
        size = int(COUNT.read_text())
        if size >= args.high:
            emit("early_drop", size=size, deleted=delete_half_open())
        time.sleep(args.period_ms / 1000)


if __name__ == "__main__":
    sys.exit(main())
