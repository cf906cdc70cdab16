"""`sessionlab try` on a real lab: the README's example, a client that idles past the
firewall's timeout (fails) and the same client with TCP keepalive (passes), run exactly
as the README shows; the outcomes checked from the run's evidence, not only its exit.

    client (idle_client.py) -- fw (TCP idle timeout 2 s) -- server (echo_server.py)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lab.catalog import ROOT
from lab.packets import read_tcp_pcap

SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))
SERVER = "python3 examples/echo_server.py"
IDLE = "python3 examples/idle_client.py --idle 4"
KEEPALIVE = "python3 examples/idle_client.py --idle 4 --keepalive 1"
PORT, AFTER_IDLE = 9000, len(b"after idle\n")


def try_s1(client: str, results: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`sessionlab try s1 --timeout 2s` with the example server and `client`; its output
    and its case folder."""
    argv = [SESSIONLAB, "try", "s1", "--timeout", "2s", "--server", SERVER, "--client", client]
    out = subprocess.run(
        [*argv, "--results", str(results)], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    runs = sorted(p for p in results.iterdir() if p.is_dir() and not p.is_symlink())
    return out, runs[-1] / "try-s1"


def late_data(pcap: Path) -> list[float]:
    """Times of the client's segments carrying the line sent after the idle."""
    return [s.time for s in read_tcp_pcap(pcap) if s.dport == PORT and s.payload_len == AFTER_IDLE]


def held(folder: Path) -> list[tuple[float, str | None]]:
    """(time, state) of the app's session in each sample of the firewall's table."""
    samples = json.loads((folder / "sessions-fw.json").read_text())
    return [
        (s["time"], next((x["state"] for x in s["sessions"] if x["dport"] == PORT), None)) for s in samples
    ]


def test_idle_client_fails_at_the_firewall(case):
    """try: a client idle past the firewall's timeout fails; its segment stops at the firewall"""
    out, folder = try_s1(IDLE, case.path / "runs")
    case.keep(folder.parent / "report.html", "the try run's report")
    assert out.returncode == 1, f"expected exit 1 (client failed): {out.stdout}{out.stderr}"
    entered, left = late_data(folder / "fw-in.pcap"), late_data(folder / "fw-out.pcap")
    case.figure("the line after the idle: captured on fw-in / fw-out", [len(entered), len(left)])
    assert len(entered) >= 2 and left == [], (
        f"the segment and its retransmissions should enter fw-in and never leave by fw-out: "
        f"{len(entered)} in, {len(left)} out ({folder})"
    )
    states = held(folder)
    gone = [t for t, state in states if state is None and t < entered[0]]
    assert gone and any(state == "ESTABLISHED" for _, state in states), (
        f"the table should show the session, then no session before the send: {folder / 'sessions-fw.json'}"
    )
    assert "after idle" not in (folder.parent / "try-s1-lab" / "logs" / "server.log").read_text()
    assert "dropped by the firewall" in out.stdout and "verdict: failed" in out.stdout, out.stdout


def test_keepalive_client_passes(case):
    """try: the same client with TCP keepalive passes; its session stays in the table"""
    out, folder = try_s1(KEEPALIVE, case.path / "runs")
    case.keep(folder.parent / "report.html", "the try run's report")
    assert out.returncode == 0, f"expected exit 0: {out.stdout}{out.stderr}"
    entered, left = late_data(folder / "fw-in.pcap"), late_data(folder / "fw-out.pcap")
    assert len(entered) == len(left) == 1, f"the line should cross once: {len(entered)} in, {len(left)} out"
    states = held(folder)
    first = next(t for t, state in states if state == "ESTABLISHED")
    during = [state for t, state in states if first <= t <= left[0]]
    case.figure("table samples from connect to the send after the idle", len(during))
    assert during and all(state == "ESTABLISHED" for state in during), (
        f"the session should stay in the table throughout the idle: {during} ({folder / 'sessions-fw.json'})"
    )
    assert "after idle" in (folder.parent / "try-s1-lab" / "logs" / "server.log").read_text()
    assert "verdict: passed" in out.stdout, out.stdout
