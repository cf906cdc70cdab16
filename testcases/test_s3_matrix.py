"""S3, FTP (SCENARIOS.md): the matrix of mode, firewall position, ALG and NAT, and real
FTP clients against its predictions.

    client -- [fwc: may source-NAT the client] -- transit -- [fws] -- server (vsftpd)
      active (PORT, EPRT):  the server connects back: a new session inbound at fwc
      passive (PASV, EPSV): the client connects out:  a new session inbound at fws

A download's control session goes to port 21; its data session is a second TCP session:
the server connects back to the port the client announced (active: PORT, EPRT), or the
client connects to the port the server announced (passive: PASV, EPSV). A stateful
firewall sees that second session as new unless an ALG (the kernel's conntrack helper)
read the announcement in the control session and expects it.

Matrix: mode (active, passive) x firewall position (client side, server side) x ALG (off,
on) x NAT (off, on). From the source: active through a client-side firewall fails without
ALG and works with it; with NAT, active needs the ALG to rewrite PORT; passive works
through a client-side firewall untouched; a server-side firewall must open the server's
configured passive port range (or run the ALG). Figure: the outcome matrix as a heat map,
with transfer times.

Every cell's outcome comes from evidence: captures on all four firewall interfaces (where
the data session's SYNs stop), the server's log (what it received and answered), the
helpers' expectations (`conntrack -E expect`), and the transferred file's checksum.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lab.capture import Capture
from lab.devices.ftp_server import FtpServer
from lab.plot import ftp_matrix_figure
from lab.results import Case
from lab.traffic import FTP_TOOLS, run_ftp_tool
from testcases import s3_common as s3
from testcases.common import rerun_missing
from testcases.s3_common import ACTIVE, CLIENT_IP, FILE, MODES, NAT_IP, SERVER_IP, SETUPS, STEP_TIMEOUT, Setup

LAB_TOPOLOGY = "s3"
LAB_TOPOLOGY_PARAMS = {"server_bw": 10}  # Mbit/s: a long transfer takes seconds
# S3's shared fixtures (testcases/s3_common.py), registered in this module
ftp_root, ftp_server = s3.ftp_root, s3.ftp_server


def run_setup(
    lab, case: Case, setup: Setup, server: FtpServer, sha256: str, cells: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """One row of the matrix: its policies, a download in every mode, and the predictions;
    kept in `cells` (the scenario's collection) for the heat map."""
    row = s3.run_downloads(lab, case, setup.name, setup.policies(), MODES, server, sha256)
    for mode, cell in row.items():
        cell["predicted"] = setup.predict(mode)
    cells[setup.name] = row
    return row


def assert_cell(setup: Setup, mode: str, cell: dict[str, Any], folder) -> None:
    """A download's observed outcome is the predicted one, and the evidence agrees."""
    where = f"{setup.name}, {mode} (evidence in {folder})"
    assert cell["observed"] == cell["predicted"], f"{where}: predicted {cell['predicted']}, observed {cell}"
    client_ok = cell["client"]["outcome"] == "ok"
    assert client_ok == (cell["observed"] == "ok"), f"{where}: the client reported {cell['client']}"
    announced = cell["announced"]
    if cell["observed"] == "refused: private address":
        # The announcement left the client-side firewall naming the private address.
        assert CLIENT_IP.replace(".", ",") in announced.get(
            "fwc-out", ""
        ) or f"|{CLIENT_IP}|" in announced.get("fwc-out", ""), (
            f"{where}: the announcement on fwc-out was {announced}"
        )
    if setup.alg and setup.nat and mode in ACTIVE:
        # The ALG rewrote the private address to the firewall's own on the way out.
        inside, outside = announced.get("fwc-in", ""), announced.get("fwc-out", "")
        private = CLIENT_IP.replace(".", ",") if mode == "PORT" else f"|{CLIENT_IP}|"
        public = NAT_IP.replace(".", ",") if mode == "PORT" else f"|{NAT_IP}|"
        assert private in inside and public in outside, f"{where}: announced {announced}"
    if setup.alg and cell["server_replies"] and cell["observed"] == "ok":
        for name in ("fwc", "fws"):
            assert cell["expectations"][name], f"{where}: no expectation on {name}: {cell['expectations']}"
    if not setup.alg:
        assert not any(cell["expectations"].values()), f"{where}: an expectation without ALG: {cell}"


@pytest.mark.parametrize("name", list(SETUPS), ids=s3.case_id)
def test_ftp_matrix_row(lab, ftp_server, ftp_root, case, collected, name):
    """FTP matrix: one row (firewall position, ALG, NAT), a download in each of PORT, EPRT, PASV, EPSV"""
    setup = SETUPS[name]
    row = run_setup(lab, case, setup, ftp_server, ftp_root[1], collected)
    for mode, cell in row.items():
        assert_cell(setup, mode, cell, case.path)
    case.figure("outcome per mode (predicted = observed)", {m: c["observed"] for m, c in row.items()})
    case.figure("transfer time per mode (s)", {m: c["client"]["transfer_s"] for m, c in row.items()})
    case.figure("expectations the ALGs created", {m: c["expectations"] for m, c in row.items()})
    case.figure("announcements as captured", {m: c["announced"] for m, c in row.items()})
    clients = {c for cell in row.values() for c in cell["server_saw_client"]}
    case.figure("client address in the server's log", sorted(clients))
    assert clients == {NAT_IP if setup.nat else CLIENT_IP}, f"the server's log shows clients {clients}"
    drops = {n: lab.node(n).counters() for n in ("fwc", "fws")}
    case.figure("drop counters", drops)
    dropped = {m: c["dropped"] for m, c in row.items() if c["dropped"]}
    case.figure("the dropped data-session packet, where it arrived", dropped)
    for mode, cell in row.items():
        if cell["observed"].startswith("dropped at "):
            firewall = cell["observed"].removeprefix("dropped at ")
            assert drops[firewall]["drop_denied"] >= 1, f"{mode}: {firewall} counted no drop: {drops}"


def test_ftp_matrix_heat_map(lab, ftp_server, ftp_root, case, collected):
    """FTP matrix: every mode x firewall position x ALG x NAT, as a heat map of outcomes"""
    cells = collected

    def run(name: str) -> None:  # a row this selection did not run: run it now
        row = run_setup(lab, case, SETUPS[name], ftp_server, ftp_root[1], cells)
        for mode, cell in row.items():
            assert_cell(SETUPS[name], mode, cell, case.path)

    ran_here = rerun_missing(cells, SETUPS, run)
    case.figure("rows run by this case (not selected on their own)", ran_here)
    table = {name: {m: cells[name][m]["observed"] for m in MODES} for name in SETUPS}
    predicted = {name: {m: SETUPS[name].predict(m) for m in MODES} for name in SETUPS}
    assert table == predicted, f"observed {table}, predicted {predicted}"
    case.figure("outcome per row and mode", table)
    times = {name: {m: cells[name][m]["client"]["transfer_s"] for m in MODES} for name in SETUPS}
    ftp_matrix_figure(
        table,
        times,
        list(MODES),
        case.plot_path("matrix", "FTP: outcome per mode, firewall position, ALG and NAT"),
    )
    (case.path / "matrix.json").write_text(json.dumps(cells, indent=1))
    case.keep(case.path / "matrix.json", "every cell with its evidence summary")


TOOL_MODES = {"curl": ("PORT", "EPRT", "PASV", "EPSV"), "lftp": ("PORT", "PASV")}
TOOL_SETUPS = (Setup("both", True, True), Setup("client side", False, False))
ANNOUNCING = {"PORT": b"PORT", "EPRT": b"EPRT", "PASV": b"227", "EPSV": b"229"}


def tool_result(tool: dict[str, Any], captures: dict[str, Capture], out: Path, sha256: str) -> dict[str, Any]:
    """A curl or lftp download in the shape of an ftplib record, from evidence: its control
    session and the port announced in it from the client-side capture (`fwc-in`), the file
    it wrote checked against the served one."""
    mode = tool["mode"]
    announced = [s for s in s3.commands(captures["fwc-in"], ANNOUNCING[mode]) if s.payload]
    sport = (announced[0].sport if announced[0].dport == 21 else announced[0].dport) if announced else None
    port = s3.announced_port(announced[0].payload.decode(errors="replace")) if announced else None
    digest = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None
    out.unlink(missing_ok=True)
    ok = tool["exit"] == 0 and digest == sha256
    return {
        "mode": mode,
        "outcome": "ok" if ok else "failed",
        "sha256": digest,
        "error": None if ok else f"exit {tool['exit']}: {tool['output']}",
        "events": [{"event": "announced", "port": port}] if port is not None else [],
        "download": {"sport": sport, "data_port": port if mode in ACTIVE else None, "port": 21},
    }


@pytest.mark.parametrize("tool", FTP_TOOLS)
def test_real_ftp_clients_behave_as_predicted(lab, ftp_server, ftp_root, case, tool):
    """curl and lftp: the predictions hold for them too, with ALG and NAT on both firewalls and without"""
    modes = TOOL_MODES[tool]
    # The tool picks its own ports: in the client's namespace, its ephemeral range is the
    # upper half of this case's block for the case's duration.
    half = case.ports[len(case.ports) // 2 :]
    original = lab.run("client", ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).split()
    lab.run("client", ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={half.start} {half.stop - 1}"])
    rows = {}
    try:
        for setup in TOOL_SETUPS:
            outputs = {mode: case.path / f"{tool}-{mode}-{s3.case_id(setup.name)}.bin" for mode in modes}
            jobs = [
                (
                    tool,
                    mode,
                    f"ftp://{SERVER_IP}/{FILE}",
                    str(outputs[mode]),
                    case.take_ports(10),
                    STEP_TIMEOUT,
                )
                for mode in modes
            ]
            with (
                s3.evidence(lab, case, f"{tool}, {setup.name}", setup.policies()) as (_, captures, expect),
                ThreadPoolExecutor(len(jobs)) as pool,
            ):
                ran = list(pool.map(lambda job: run_ftp_tool(lab, "client", *job), jobs))
            log = ftp_server.log()
            row = {}
            for record in ran:
                result = tool_result(record, captures, outputs[record["mode"]], ftp_root[1])
                cell = (
                    s3.cell_of(result, captures, expect, log, ftp_root[1])
                    if result["download"]["sport"]
                    else {}
                )
                cell.update(
                    predicted=setup.predict(record["mode"]), exit=record["exit"], command=record["argv"]
                )
                row[record["mode"]] = cell
            rows[setup.name] = row
    finally:
        lab.run("client", ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={original[0]} {original[1]}"])
    (case.path / "downloads.json").write_text(json.dumps(rows, indent=1, default=str))
    case.keep(case.path / "downloads.json", f"{tool}: every download with its evidence summary")
    case.figure(
        f"{tool}: outcome per setup and mode",
        {n: {m: c.get("observed") for m, c in r.items()} for n, r in rows.items()},
    )
    case.figure(f"{tool}: exit codes", {n: {m: c["exit"] for m, c in r.items()} for n, r in rows.items()})
    for name, row in rows.items():
        for mode, cell in row.items():
            assert "observed" in cell, (
                f"{tool} {mode}, {name}: no {mode} announcement captured on fwc-in: {cell}"
            )
            assert_cell(SETUPS[name], mode, cell, case.path)
