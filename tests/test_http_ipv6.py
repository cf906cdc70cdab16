"""The HTTP server over both families, run for real on loopback: an IPv6 client is logged
by its unbracketed address, an IPv4 one as before (not as ::ffff:a.b.c.d), and a health
check reaches it over IPv6."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.agents.health_check import check_once
from lab.events import proc_events
from lab.traffic import HttpLoad, http_log, run_http, start_http_server
from tests.test_apps import HERE, Loopback, free_block, free_port, poll

HERE6 = "::1"


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loopback]:
    lab = Loopback(tmp_path)
    yield lab
    lab.close()


def test_server_answers_both_families_and_logs_each_peer_as_its_own(loop):
    port = free_port()
    server = start_http_server(loop, "r1", "r1", port)
    (listening,) = proc_events(server, "listening")
    assert listening["families"] == ["ipv4", "ipv6"], listening
    first = free_block(6)
    xff = ("X-Forwarded-For: fd00:4:1::11",)
    loads = {
        "six": HttpLoad(HERE6, 3, first, port=port, headers=xff),
        "four": HttpLoad(HERE, 3, first + 3, port=port),
    }
    records = run_http(loop, loads)
    assert all(r["ok"] and r["served_by"] == "r1" for rows in records.values() for r in rows), records
    logged = poll(lambda: http_log(server), lambda log: len(log) == 6)
    peers = sorted((r["peer"], r["peer_port"]) for r in logged)
    assert peers == sorted(
        [(HERE6, p) for p in range(first, first + 3)] + [(HERE, p) for p in range(first + 3, first + 6)]
    ), peers
    six = [r for r in logged if r["peer"] == HERE6]
    assert {r["xff"] for r in six} == {"fd00:4:1::11"}
    assert {r["host"] for r in six} == {f"[::1]:{port}"}  # http.client brackets an IPv6 Host
    assert check_once("http", "/health", HERE6, port, 0, 1.0) == (True, "HTTP 200")


def test_server_bound_to_one_address_serves_that_family_only():
    from lab.apps.http_server import listeners

    port = free_port()
    six = listeners(HERE6, port)
    try:
        assert list(six) == ["ipv6"]
    finally:
        for server in six.values():
            server.server_close()
    four = listeners(HERE, port)
    try:
        assert list(four) == ["ipv4"]
    finally:
        for server in four.values():
            server.server_close()
