"""S4, L7 balancers (ADC): haproxy and nginx on lb1, the same cases on each where both can.

Clients speak HTTP or HTTPS to the VIP 10.0.1.100 on lb1; the ADC, a full proxy, opens
its own connections to the real servers r1-r4 (from lb1's address, 10.0.2.2, so the
return path needs no fix). Every case's evidence: the servers' own logs (which server
answered, what it was sent: X-Forwarded-For, the path), what curl got (status, headers,
bytes), captures on both sides of lb1 (plaintext or TLS, bytes on the wire), and
haproxy's stats socket. Certificates come from a CA the lab makes per run (trustme).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from lab.capture import Capture
from lab.config import Adc, HealthCheck, L4Balancer, Pool, RealServer, Route
from lab.devices.adc import AdcDaemon, save_config
from lab.errors import ConfigError
from lab.pki import LabCa
from lab.plot import comparison_figure
from lab.traffic import curl, http_log, run_http, run_wrk, start_http_server
from testcases.s4_common import (
    CLIENTS,
    LB1_SERVER_SIDE,
    SERVERS,
    VIP,
    set_return_path,
    spread_loads,
    start_servers,
)

LAB_TOPOLOGY = "s4"
DAEMONS = ("haproxy", "nginx")
CLIENT = "c1"


def pool(name: str, *servers: str, port: int = 80, **options: Any) -> Pool:
    return Pool(name, tuple(RealServer(SERVERS[s], port) for s in servers), **options)


def everyone(**options: Any) -> Pool:
    return pool("web", *SERVERS, **options)


@pytest.fixture(scope="module")
def pki(lab) -> LabCa:
    """The run's CA and the ADC's certificate (for the VIP), and one for the servers."""
    ca = LabCa(lab.runtime_dir() / "pki")
    ca.issue("adc", VIP)
    ca.issue("servers", *SERVERS.values())
    return ca


def start(lab: Any, case: Any, adc: Adc, daemon: str) -> AdcDaemon:
    """The case's ADC on lb1, its server-side ports from the second half of the case's block."""
    running = lab.node("lb1").start_adc(adc, daemon, case.ports[len(case.ports) // 2 :])
    case.keep(save_config(running, case.path), f"{daemon} configuration")
    return running


@contextlib.contextmanager
def behind_adc(lab: Any, case: Any, daemon: str, **options: Any) -> Iterator[dict[str, Any]]:
    """r1's server behind the case's ADC with one pool (r1) and `options`, for one variant
    of a case: the ADC and the server stop after the block."""
    servers = start_servers(lab, ("r1",))
    running = start(lab, case, Adc(VIP, 80, (pool("web", "r1"),), **options), daemon)
    try:
        yield servers
    finally:
        running.stop()
        lab.stop(servers["r1"])


class Client:
    """curl from c1, each request from the next ports of the case's block."""

    def __init__(self, lab: Any, case: Any, node: str = CLIENT):
        self.lab, self.case, self.node = lab, case, node

    def get(self, path: str, *options: str, https: bool = False) -> dict[str, Any]:
        url = f"{'https' if https else 'http'}://{VIP}{path}"
        return curl(self.lab, self.node, url, self.case.take_ports(4), *options)


def served(servers: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request the servers logged (health checks aside), in time order."""
    rows = [{**r, "server": n} for n, p in servers.items() for r in http_log(p) if r["path"] != "/health"]
    return sorted(rows, key=lambda r: r["t"])


@pytest.mark.parametrize("daemon", DAEMONS)
def test_routing_by_path_and_header(lab, case, daemon):
    """L7: requests go to a pool by URL path (/static/) and by header (X-Version: beta)"""
    servers = start_servers(lab)
    adc = Adc(
        VIP,
        80,
        (pool("app", "r3"), pool("static", "r1", "r2"), pool("beta", "r4")),
        routes=(Route("static", path_prefix="/static/"), Route("beta", header="X-Version", value="beta")),
    )
    start(lab, case, adc, daemon)
    client = Client(lab, case)
    asked = {"/static/a.css": (), "/": (), "/cart": (), "/ (X-Version: beta)": ("-H", "X-Version: beta")}
    answers: dict[str, list[str]] = {}
    for label, options in asked.items():
        path = label.split(" ")[0]
        answers[label] = [client.get(path, *options)["headers"].get("x-served-by", "") for _ in range(4)]
    logged = Counter((r["server"], r["path"]) for r in served(servers))
    case.figure("answered by (per request)", answers)
    case.figure(
        "requests per server and path (servers' logs)", {f"{s} {p}": n for (s, p), n in logged.items()}
    )
    assert set(answers["/static/a.css"]) == {"r1", "r2"}, answers
    assert set(answers["/"]) == set(answers["/cart"]) == {"r3"}, answers
    assert set(answers["/ (X-Version: beta)"]) == {"r4"}, answers
    assert logged[("r3", "/")] == 4 and logged[("r4", "/")] == 4 and logged[("r3", "/cart")] == 4, logged
    assert logged[("r1", "/static/a.css")] + logged[("r2", "/static/a.css")] == 4, logged


def payloads(capture: Capture, port: int) -> list[bytes]:
    return [s.payload for s in capture.segments() if port in (s.sport, s.dport) and s.payload]


def is_tls(data: list[bytes]) -> bool:
    """A TLS handshake record (content type 22, version 3.x) opens the stream."""
    return any(p[:1] == b"\x16" and p[1:2] == b"\x03" for p in data)


@pytest.mark.parametrize("daemon", DAEMONS)
@pytest.mark.parametrize("mode", ["termination", "re-encryption"])
def test_tls(lab, case, pki, daemon, mode):
    """L7 TLS: clients speak HTTPS to the ADC with the lab CA's certificate; servers get HTTP or HTTPS"""
    tls_servers = mode == "re-encryption"
    pem = str(pki.folder / "servers.pem") if tls_servers else None
    port = 443 if tls_servers else 80
    servers = {n: start_http_server(lab, n, n, port, tls=pem) for n in SERVERS}
    adc = Adc(VIP, 443, (everyone(port=port, tls=tls_servers),), certificate=str(pki.folder / "adc.pem"))
    start(lab, case, adc, daemon)
    client = Client(lab, case)
    with (
        Capture(lab, "lb1", "lb1-c", case.path, "lb1-c") as outside,
        Capture(lab, "lb1", "lb1-s", case.path, "lb1-s") as inside,
    ):
        verified = client.get("/secret", "--cacert", str(pki.ca_path), https=True)
        unverified = client.get("/secret", https=True)  # no CA: curl must refuse the certificate
    case.keep(outside.path, "capture on lb1's client side")
    case.keep(inside.path, "capture on lb1's server side")
    client_side, server_side = payloads(outside, 443), payloads(inside, port)
    plaintext = b"GET /secret"
    case.figure("curl with the lab CA", {"status": verified["http_code"], "tls": verified.get("scheme")})
    case.figure("curl without the lab CA (exit code)", unverified["exitcode"])
    case.figure(
        "client side: TLS / plaintext GET seen",
        [is_tls(client_side), any(plaintext in p for p in client_side)],
    )
    case.figure(
        "server side: TLS / plaintext GET seen",
        [is_tls(server_side), any(plaintext in p for p in server_side)],
    )
    case.figure("servers that answered", sorted({r["server"] for r in served(servers)}))
    assert verified["http_code"] == 200 and verified["headers"].get("x-served-by") in SERVERS, verified
    assert unverified["exitcode"] == 60, f"curl should refuse a certificate it cannot verify: {unverified}"
    assert is_tls(client_side) and not any(plaintext in p for p in client_side), "the client side must be TLS"
    if tls_servers:
        assert is_tls(server_side) and not any(plaintext in p for p in server_side), (
            "re-encrypted: TLS to servers"
        )
    else:
        assert any(plaintext in p for p in server_side), "terminated: the servers get plaintext HTTP"
    assert len(served(servers)) == 1, "only the verified request reaches a server"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_forwarded_for(lab, case, daemon):
    """L7: what the server learns of the client, with and without X-Forwarded-For"""
    seen = {}
    for xff in (True, False):
        with behind_adc(lab, case, daemon, forwarded_for=xff) as servers:
            Client(lab, case).get("/whoami")
            (request,) = served(servers)
            seen["with XFF" if xff else "without XFF"] = {
                "peer": request["peer"],
                "X-Forwarded-For": request["xff"],
            }
    case.figure("what r1 saw", seen)
    assert seen["with XFF"] == {"peer": LB1_SERVER_SIDE, "X-Forwarded-For": CLIENTS[CLIENT]}, seen
    assert seen["without XFF"] == {"peer": LB1_SERVER_SIDE, "X-Forwarded-For": None}, seen


@pytest.mark.parametrize("daemon", DAEMONS)
def test_compression(lab, case, daemon):
    """L7: 64 KiB of text, gzip on and off: bytes on the wire to the client"""
    sizes = {}
    for gzip in (False, True):
        with behind_adc(lab, case, daemon, compression=gzip) as servers:
            name = f"lb1-c-{'gzip' if gzip else 'plain'}"
            with Capture(lab, "lb1", "lb1-c", case.path, name, snaplen=65535) as wire:
                got = Client(lab, case).get("/text/64", "--compressed")
            case.keep(wire.path, f"capture on lb1's client side, compression {'on' if gzip else 'off'}")
            on_wire = sum(len(s.payload) for s in wire.segments() if s.sport == 80)
            sizes["gzip" if gzip else "off"] = {
                "bytes on the wire to the client": on_wire,
                "Content-Encoding": got["headers"].get("content-encoding"),
                "status": got["http_code"],
                "body bytes r1 sent": http_log(servers["r1"])[0]["bytes"],
            }
    case.figure("compression off vs on", sizes)
    off, on = sizes["off"], sizes["gzip"]
    assert off["status"] == on["status"] == 200, sizes
    assert off["Content-Encoding"] is None and on["Content-Encoding"] == "gzip", sizes
    assert off["bytes on the wire to the client"] >= 64 * 1024, sizes
    ratio = on["bytes on the wire to the client"] / off["bytes on the wire to the client"]
    case.figure("bytes on the wire, gzip / off", round(ratio, 3))
    assert ratio < 0.5, f"gzip should at least halve 64 KiB of text on the wire: {ratio:.2f}"


@pytest.mark.parametrize("daemon", DAEMONS)
def test_cache(lab, case, daemon):
    """L7: ten requests for a static file, with and without the ADC's cache: requests the backend got"""
    counts = {}
    for cache in (False, True):
        with behind_adc(lab, case, daemon, cache_pattern=r"^/static/" if cache else None) as servers:
            answers = [Client(lab, case).get("/static/logo.css") for _ in range(10)]
            counts["cache" if cache else "no cache"] = {
                "client answers 200": sum(1 for a in answers if a["http_code"] == 200),
                "requests r1 got (its log)": len(served(servers)),
                "X-Cache": [a["headers"].get("x-cache") for a in answers][:3] if daemon == "nginx" else None,
            }
    case.figure("backend requests for 10 client requests", counts)
    assert counts["no cache"]["client answers 200"] == counts["cache"]["client answers 200"] == 10, counts
    assert counts["no cache"]["requests r1 got (its log)"] == 10, counts
    assert counts["cache"]["requests r1 got (its log)"] == 1, counts


@pytest.mark.parametrize("daemon", DAEMONS)
def test_waf_rule_and_redirect(lab, case, daemon):
    """L7: a WAF-style rule refuses a pattern (403) before any server sees it; /old/ redirects (302)"""
    servers = start_servers(lab, ("r1",))
    adc = Adc(VIP, 80, (pool("web", "r1"),), deny_pattern=r"union.select", redirects=(("/old/", "/new/"),))
    start(lab, case, adc, daemon)
    client = Client(lab, case)
    asked = ["/search/shoes", "/search/1-union-select-password", "/search/hats", "/old/page"]
    got = {path: client.get(path) for path in asked}
    logged = [r["path"] for r in served(servers)]
    case.figure("status per request", {p: g["http_code"] for p, g in got.items()})
    case.figure("paths r1 saw (its log)", logged)
    case.figure("redirect location", got["/old/page"]["headers"].get("location"))
    assert {p: g["http_code"] for p, g in got.items()} == {
        "/search/shoes": 200,
        "/search/1-union-select-password": 403,
        "/search/hats": 200,
        "/old/page": 302,
    }
    assert got["/old/page"]["headers"].get("location", "").endswith("/new/"), got["/old/page"]["headers"]
    assert logged == ["/search/shoes", "/search/hats"], (
        f"refused and redirected requests reached r1: {logged}"
    )


def test_cookie_persistence(lab, case):
    """L7 (haproxy): a cookie keeps a client on its server; without it, round robin spreads"""
    servers = start_servers(lab)
    jar = lab.runtime_dir() / f"{case.name}.cookies"
    spread = {}
    for cookie in (False, True):
        running = start(lab, case, Adc(VIP, 80, (everyone(cookie=cookie),)), "haproxy")
        options = ("-c", str(jar), "-b", str(jar)) if cookie else ()
        jar.unlink(missing_ok=True)
        answers = [Client(lab, case).get("/", *options)["headers"].get("x-served-by") for _ in range(8)]
        spread["cookie" if cookie else "no cookie"] = answers
        running.stop()
    case.figure("server per request", spread)
    case.figure("cookie the client kept", jar.read_text().splitlines()[-1] if jar.exists() else None)
    assert len(set(spread["cookie"])) == 1, f"with the cookie, one server: {spread['cookie']}"
    assert set(spread["no cookie"]) == set(SERVERS), f"without it, every server: {spread['no cookie']}"
    assert len(served(servers)) == 16


def test_haproxy_health_check_takes_a_dead_server_out(lab, case):
    """L7 (haproxy): an HTTP check (every 200 ms, fall 2, rise 2) marks a stopped server DOWN, then UP"""
    servers = start_servers(lab)
    check = HealthCheck("http", interval_ms=200, rise=2, fall=2)
    running = start(lab, case, Adc(VIP, 80, (everyone(check=check),)), "haproxy")
    lab.wait(lambda: all(s["status"] == "UP" for s in running.servers().values()), 5, "every server UP")
    client = Client(lab, case)
    before = Counter(client.get("/")["headers"].get("x-served-by") for _ in range(8))
    lab.stop(servers["r2"])
    lab.wait(lambda: running.servers()["web/web2"]["status"] == "DOWN", 3, "haproxy to mark r2 DOWN")
    during = [client.get("/") for _ in range(8)]
    state = running.servers()["web/web2"]
    servers["r2"] = start_http_server(lab, "r2", "r2")
    lab.wait(lambda: running.servers()["web/web2"]["status"] == "UP", 3, "haproxy to mark r2 UP again")
    after = Counter(client.get("/")["headers"].get("x-served-by") for _ in range(8))
    during_by = Counter(a["headers"].get("x-served-by") for a in during)
    case.figure("answers before (per server)", dict(before))
    case.figure("r2 in haproxy's stats while stopped", state)
    case.figure("answers while r2 was DOWN", dict(during_by))
    case.figure("answers after r2 came back", dict(after))
    assert set(before) == set(SERVERS), before
    assert all(a["http_code"] == 200 for a in during) and "r2" not in during_by, during_by
    assert state["downs"] >= 1 and state["check"].startswith("L4"), state
    assert "r2" in after, after


def test_haproxy_and_nginx_refuse_what_they_cannot_do(lab, case):
    """L7: bad ADC settings are refused before start, by our checks or by the daemon itself"""
    nginx_cookie = Adc(VIP, 80, (everyone(cookie=True),))
    with pytest.raises(ConfigError, match="nginx OSS has not") as refused:
        lab.node("lb1").start_adc(nginx_cookie, "nginx", case.ports)
    case.figure("nginx with cookie persistence", str(refused.value))
    missing = replace(Adc(VIP, 443, (everyone(),)), certificate="/nonexistent/adc.pem")
    with pytest.raises(ConfigError, match="rejects.*adc.pem") as rejected:
        lab.node("lb1").start_adc(missing, "haproxy", case.ports)
    case.figure("haproxy with a missing certificate", str(rejected.value)[:200])
    assert not lab.run("lb1", ["ss", "-Hltn"]).strip(), "nothing may listen after a refused start"


COMPARED = ("kernel L4 (nftables)", "haproxy", "nginx")


def test_same_traffic_through_each_balancer(lab, case):
    """S4 compared: the same 120 sessions and a 3 s wrk run through lb1 as kernel L4, haproxy, nginx"""
    set_return_path(lab, "route back")
    real = tuple(RealServer(a, 80) for a in SERVERS.values())
    counts, rates, peers, latency = {}, {}, {}, {}
    for kind in COMPARED:
        servers = start_servers(lab)
        lb = lab.node("lb1")
        if kind == "haproxy" or kind == "nginx":
            running = start(lab, case, Adc(VIP, 80, (Pool("web", real),)), kind)
        else:
            lb.apply(L4Balancer(VIP, 80, real))
        records = run_http(lab, spread_loads(case, 40))
        case.note_load(*records.values())
        failed = [r for rows in records.values() for r in rows if not r["ok"]]
        assert not failed, f"{kind}: {len(failed)} requests failed: {failed[:3]}"
        logged = [r for p in servers.values() for r in http_log(p)]
        counts[kind] = Counter(r["server"] for r in served(servers))
        wrk = run_wrk(lab, "c1", f"http://{VIP}/", 3, 16, case.take_ports(40))
        rates[kind] = wrk["requests_per_s"]
        peers[kind] = sorted({r["peer"] for r in logged})
        elapsed = sorted(r["elapsed"] * 1000 for rows in records.values() for r in rows)
        latency[kind] = round(elapsed[len(elapsed) // 2], 2)
        assert not any(wrk["socket_errors"].values()) and wrk["non_2xx"] == 0, f"{kind}: {wrk}"
        if kind in ("haproxy", "nginx"):
            running.stop()
        for proc in servers.values():
            lab.stop(proc)
        lb.reset()
    case.figure("requests per server (servers' logs), 120 sessions", {k: dict(v) for k, v in counts.items()})
    case.figure("requests/s, wrk 16 connections 3 s", {k: round(v) for k, v in rates.items()})
    case.figure("what the servers saw as the client", peers)
    case.figure("median time per request, new session each (ms)", latency)
    comparison_figure(
        counts,
        rates,
        case.plot_path("compare", "the same traffic through each balancer"),
        "S4: one network, three balancers",
    )
    for kind, per in counts.items():
        assert sum(per.values()) == 120, f"{kind}: the servers logged {sum(per.values())} of 120 sessions"
        assert max(per.values()) - min(per.values()) <= 1 or kind == "nginx", (
            f"{kind} is not round robin: {per}"
        )
    assert peers["kernel L4 (nftables)"] == sorted(CLIENTS.values()), peers
    assert peers["haproxy"] == peers["nginx"] == [LB1_SERVER_SIDE], f"a proxy hides the client: {peers}"
