"""`sessionlab try`: its options checked before anything is built (one line each, exit 2),
and what a run reports computed from recorded evidence (no network)."""

from pathlib import Path

import pytest

from lab.cli import main
from lab.conntrack import Session
from lab.errors import ConfigError
from lab.packets import TcpSegment
from lab.tryout import analysis
from lab.tryout.plan import Event, make_plan, parse_at, parse_duration, parse_timeout

SERVER, CLIENT = "python3 examples/echo_server.py", "python3 examples/idle_client.py --idle 4"
S2_MODES = ("independent", "symmetric", "correction-mac", "correction-mpls", "sync")


# --- options -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1.5s", 1.5), ("500ms", 0.5), ("2m", 120.0), ("7", 7.0), ("1min", 60.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_at_parses_time_and_event():
    assert parse_at("30s:expire") == Event(30.0, "expire")
    assert parse_at("500ms:cut") == Event(0.5, "cut")
    assert parse_at("10:failover").label == "10s:failover"


def test_timeout_whole_seconds():
    assert parse_timeout("2s") == 2
    assert parse_timeout("5m") == 300


def test_plan_defaults_and_options():
    plan = make_plan("s1", SERVER, CLIENT, timeout="2s", at=("5s:cut", "2s:expire"))
    assert plan.policy.tcp_timeout == 2
    assert [e.kind for e in plan.events] == ["expire", "cut"]  # in time order
    assert plan.limit == 120.0 and plan.port == 9000
    s2 = make_plan("s2", SERVER, CLIENT, mode="sync", at=("3s:failover",), modes=S2_MODES)
    assert [(s.port, s.address) for s in s2.policy.allow_inbound] == [(9000, "10.0.1.0/24")]


def test_commands_and_environment():
    plan = make_plan("s1", "srv --port {port}", "nc {server} {port}", port=7000)
    assert plan.command("client", "10.0.2.10") == "nc 10.0.2.10 7000"
    assert plan.command("server", "10.0.2.10") == "srv --port 7000"
    assert plan.env("10.0.2.10", "10.0.1.10") == {
        "SERVER_ADDR": "10.0.2.10",
        "SERVER_PORT": "7000",
        "CLIENT_ADDR": "10.0.1.10",
    }


BAD = [
    (("s9", SERVER, CLIENT), {}, "unknown scenario 's9'"),
    (("s1", "", CLIENT), {}, "--server: the command is empty"),
    (("s1", SERVER, "  "), {}, "--client: the command is empty"),
    (("s1", SERVER, CLIENT), {"at": ("30s",)}, "expected TIME:EVENT"),
    (("s1", SERVER, CLIENT), {"at": ("soon:expire",)}, "is not a time"),
    (("s1", SERVER, CLIENT), {"at": ("-1s:expire",)}, "is not a time"),
    (("s1", SERVER, CLIENT), {"at": ("3s:explode",)}, "unknown event 'explode'"),
    (("s1", SERVER, CLIENT), {"at": ("3s:failover",)}, "s1 has no failover (it has one firewall, no pair"),
    (("s1", SERVER, CLIENT), {"at": ("200s:expire",)}, "after the client's --limit of 120s"),
    (("s1", SERVER, CLIENT), {"timeout": "soon"}, "--timeout 'soon' is not a time"),
    (("s1", SERVER, CLIENT), {"timeout": "500ms"}, "whole seconds"),
    (("s1", SERVER, CLIENT), {"timeout": "0s"}, "whole seconds"),
    (("s1", SERVER, CLIENT), {"mode": "sync"}, "s1 has no controller"),
    (("s2", SERVER, CLIENT), {"mode": "fast", "modes": S2_MODES}, "not a mode of s2"),
    (("s1", SERVER, CLIENT), {"limit": "0s"}, "--limit '0s': between 1s and 3600s"),
    (("s1", SERVER, CLIENT), {"port": 0}, "--port 0: not a port"),
    (("s1", SERVER, CLIENT), {"policy": Path("/nonexistent.toml")}, "cannot read"),
]


@pytest.mark.parametrize(("args", "options", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_input_one_problem(args, options, message):
    with pytest.raises(ConfigError, match=None) as raised:
        make_plan(*args, **options)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


CLI_BAD = [
    (["try", "s9", "--server", SERVER, "--client", CLIENT], "unknown scenario 's9'"),
    (["try", "s1", "--server", SERVER], "Missing option '--client'"),
    (["try", "s1", "--server", SERVER, "--client", ""], "--client: the command is empty"),
    (["try", "s1", "--server", SERVER, "--client", CLIENT, "--at", "5s:failover"], "s1 has no failover"),
    (["try", "s2", "--server", SERVER, "--client", CLIENT, "--mode", "fast"], "not a mode of s2"),
    (
        ["try", "s1", "--server", SERVER, "--client", CLIENT, "--timeout", "2x"],
        "--timeout '2x' is not a time",
    ),
]


@pytest.mark.parametrize(("argv", "message"), CLI_BAD, ids=[m for _, m in CLI_BAD])
def test_cli_bad_input_builds_nothing(argv, message, capsys, monkeypatch, tmp_path):
    import lab.tryout.runner

    def never(*_: object) -> None:
        raise AssertionError("a lab was about to be built")

    monkeypatch.setattr(lab.tryout.runner, "run_try", never)
    assert main([*argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # no run folder


# --- what a run reports, from recorded evidence --------------------------------------------
CLIENT_IP, SERVER_IP, PORT = "10.0.1.10", "10.0.2.10", 9000


def seg(t: float, flags: str, seq: int, ack: int, n: int = 0, out: bool = True) -> TcpSegment:
    ends = (CLIENT_IP, 40000, SERVER_IP, PORT) if out else (SERVER_IP, PORT, CLIENT_IP, 40000)
    src, sport, dst, dport = ends
    return TcpSegment(src, dst, sport, dport, seq, ack, flags, n, time=t)


def at(point: str, *segments: TcpSegment) -> list[analysis.Seen]:
    return [analysis.Seen(point, s) for s in segments]


def test_segment_dropped_by_the_firewall_is_found():
    """The failure: the handshake and first data cross; after the idle, the data and its
    retransmissions enter fw-in and never leave by fw-out."""
    crossed = [seg(100.0, "S", 1, 0), seg(100.01, "A", 2, 1), seg(100.02, "PA", 2, 1, 6)]
    lost = [seg(104.1, "PA", 8, 7, 11), seg(104.3, "PA", 8, 7, 11), seg(104.7, "PA", 8, 7, 11)]
    inside = at("fw-in", *crossed, *lost)
    outside = at("fw-out", *[seg(s.time + 0.0002, s.flags, s.seq, s.ack, s.payload_len) for s in crossed])
    d = analysis.direction("client", inside, outside, PORT, 100.0)
    assert (d.entered, d.left, len(d.dropped)) == (6, 3, 3)
    assert d.dropped[0].segment.time == pytest.approx(4.1)
    back = analysis.direction("server", outside, inside, PORT, 100.0)
    lines = analysis.where_stopped(d, back, "fw")
    assert lines[0].startswith(
        "the client's segments reached fw-in but did not leave fw after t=0.0 s: 3 dropped"
    )
    assert "t=4.1-4.7 s (flags PA)" in lines[0]
    assert lines[1] == "the server's segments never reached fw"


def test_identical_segments_are_matched_one_to_one():
    """Keepalive probes are identical; the one forwarded must not hide the one dropped."""
    probes = [seg(1.0, "A", 7, 7), seg(2.0, "A", 7, 7), seg(3.0, "A", 7, 7)]
    d = analysis.direction("client", at("fw-in", *probes), at("fw-out", seg(1.0001, "A", 7, 7)), PORT, 0.0)
    assert [x.segment.time for x in d.dropped] == [2.0, 3.0]


def test_lost_beyond_the_firewall():
    """A cut server link: the client's segments cross the firewall, nothing comes back."""
    out = [seg(t, "PA", 8, 7, 11) for t in (0.1, 4.0, 4.2, 4.6)]
    reply = [seg(0.1005, "A", 7, 19, out=False)]
    d = analysis.direction(
        "client",
        at("fw-in", *out),
        at("fw-out", *[seg(s.time + 1e-4, "PA", 8, 7, 11) for s in out]),
        PORT,
        0.0,
    )
    back = analysis.direction(
        "server", at("fw-out", *reply), at("fw-in", seg(0.1006, "A", 7, 19, out=False)), PORT, 0.0
    )
    lines = analysis.where_stopped(d, back, "fw")
    assert lines[0].startswith("all 4 of the client's segments crossed fw")
    assert "lost beyond the firewall, on the server's side" in lines[1]


def test_sessions_over_time():
    def ct(state: str, timeout: int) -> Session:
        return Session("tcp", CLIENT_IP, SERVER_IP, 40000, PORT, state, timeout)

    other = Session("tcp", CLIENT_IP, SERVER_IP, 40001, 22, "ESTABLISHED", 100)
    snaps = [
        ("fw", 10.0, [other]),
        ("fw", 10.2, [ct("ESTABLISHED", 2), other]),
        ("fw", 11.8, [ct("ESTABLISHED", 1)]),
        ("fw", 12.4, []),
    ]
    counts, lives = analysis.app_sessions(snaps, PORT, 10.0)
    assert counts == [(0.0, 0), (0.2, 1), (2.4, 0)]
    assert lives == [
        {
            "firewall": "fw",
            "session": f"tcp {CLIENT_IP}:40000 -> {SERVER_IP}:{PORT}",
            "first seen (s)": 0.2,
            "last seen (s)": 1.8,
            "states": ["ESTABLISHED"],
            "held at the end": False,
        }
    ]


def test_verdict_is_the_clients_exit_status():
    assert analysis.verdict(0, False) == ("passed", 0)
    assert analysis.verdict(1, False) == ("failed", 1)
    assert analysis.verdict(-15, False) == ("failed", 1)
    assert analysis.verdict(0, True) == ("failed", 1)  # killed at --limit
    assert analysis.verdict(None, False) == ("failed", 1)  # never started
    assert analysis.exit_words(-15, True) == "stopped by sessionlab (signal 15)"
    assert analysis.exit_words(1, False) == "exit 1"


def test_sessions_of_a_pair_are_counted_together():
    """Two firewalls sampled in turn: the count is the sum of each one's latest sample."""
    s = Session("tcp", CLIENT_IP, SERVER_IP, 40000, PORT, "ESTABLISHED", 100)
    snaps = [("fw1", 0.0, [s]), ("fw2", 0.01, []), ("fw1", 0.2, [s]), ("fw2", 0.21, [s]), ("fw1", 0.4, [])]
    counts, lives = analysis.app_sessions(snaps, PORT, 0.0)
    assert counts == [(0.0, 1), (0.21, 2), (0.4, 1)]
    assert [(x["firewall"], x["held at the end"]) for x in lives] == [("fw1", False), ("fw2", True)]
