"""The HTTP server and client apps, and the health checks, run for real on loopback."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.agents.health_check import check_once
from lab.errors import LabError
from lab.health import ServerHealth, live
from lab.traffic import HttpLoad, http_log, http_records, run_http, start_http_server
from tests.test_apps import HERE, Loopback, free_block, free_port, poll


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loopback]:
    lab = Loopback(tmp_path)
    yield lab
    lab.close()


def test_server_names_itself_and_logs_what_it_saw(loop):
    port = free_port()
    server = start_http_server(loop, "r1", "r1", port)
    first = free_block(5)
    records = run_http(
        loop, {"c1": HttpLoad(HERE, 5, first, port=port, headers=("X-Forwarded-For: 192.0.2.7",))}
    )
    rows = records["c1"]
    assert rows.margin is not None and rows.margin["load"] == "http_client on c1", rows.margins
    assert [r["i"] for r in rows] == list(range(5))
    assert all(r["ok"] and r["served_by"] == "r1" and r["status"] == 200 for r in rows), rows
    logged = poll(lambda: http_log(server), lambda log: len(log) == 5)
    assert sorted(r["peer_port"] for r in logged) == list(range(first, first + 5))
    assert {r["xff"] for r in logged} == {"192.0.2.7"}


def test_keepalive_uses_one_connection_and_maintenance_fails_the_health_path(loop):
    port = free_port()
    server = start_http_server(loop, "r2", "r2", port)
    first = free_block(1)
    rows = run_http(loop, {"c": HttpLoad(HERE, 3, first, port=port, keepalive=True)})["c"]
    assert all(r["ok"] for r in rows)
    assert {r["peer_port"] for r in http_log(server)} == {first}
    assert check_once("http", "/health", HERE, port, 0, 1.0) == (True, "HTTP 200")
    server.popen.send_signal(signal.SIGUSR1)
    assert poll(lambda: check_once("http", "/health", HERE, port, 0, 1.0), lambda r: not r[0]) == (
        False,
        "HTTP 503",
    )
    assert check_once("tcp", "/", HERE, port, 0, 1.0) == (True, "")  # a TCP check cannot tell


def test_a_closed_port_fails_both_checks():
    port = free_port()
    assert check_once("tcp", "/", HERE, port, 0, 0.5) == (False, "ConnectionRefusedError")
    assert check_once("http", "/health", HERE, port, 0, 0.5) == (False, "ConnectionRefusedError")


def test_client_records_refused_requests_and_a_cut_run_is_an_error(loop):
    rows = run_http(loop, {"c": HttpLoad(HERE, 2, 0, port=free_port(), timeout=0.5)})["c"]
    assert [r["error"] for r in rows] == ["ConnectionRefusedError"] * 2
    with pytest.raises(LabError, match="ended early"):
        http_records('{"i": 0, "ok": true}\n')


def test_health_counts_fall_and_rise_in_a_row():
    h = ServerHealth("r1", rise=2, fall=3)
    results = [False, False, True, False, False, False, True, True]
    changes = [h.record(ok, float(t)) for t, ok in enumerate(results)]
    assert changes == [None, None, None, None, None, "down", None, "up"]
    servers = {"r1": h, "r2": ServerHealth("r2", 1, 1)}
    servers["r2"].record(False, 9.0)
    assert live(servers) == ["r1"]
