"""The pure core of `sessionlab characterize`: the idle-time search, the profile as data, its
requirement table, profile.md and the figures (no network)."""

from __future__ import annotations

import json

import pytest

from lab.characterize.bisect import IdleSearch, Round, duration_words
from lab.characterize.profile import (
    INCONCLUSIVE,
    MEETS,
    MISSES,
    NOT_APPLICABLE,
    NOT_MEASURED,
    Device,
    Finding,
    Profile,
    render_markdown,
    requirements,
)
from lab.errors import ConfigError


def search_against(timeout: float, maximum: float = 120.0, **kw) -> IdleSearch:
    """The search run against an ideal device whose sessions live `timeout` s."""
    search = IdleSearch(maximum, **kw)
    while times := search.next_round():
        assert times == sorted(times) and len(times) <= search.parallel
        search.record({t: t < timeout for t in times})
    return search


@pytest.mark.parametrize("timeout", [2.3, 7.0, 45.0, 100.0])
def test_search_converges_on_a_known_timeout(timeout):
    search = search_against(timeout)
    low, high = search.bracket
    assert high is not None and low < timeout <= high, search.rounds
    assert high - low <= max(1.0, 0.02 * low), search.bracket
    assert len(search.rounds) <= 4, [r.probes for r in search.rounds]
    assert search.anomalies == []
    first = search.rounds[0]
    assert len(first.probes) == 8 and first.probes[0][0] == 1.0 and first.probes[-1][0] == 120.0


def test_everything_alive_means_beyond_the_maximum():
    search = search_against(500.0)
    assert search.bracket == (120.0, None)
    assert len(search.rounds) == 1 and search.next_round() == []


def test_everything_dead_means_below_the_first_probe():
    search = search_against(0.5)
    assert search.bracket == (0.0, 1.0)
    # a larger first probe: the bracket (0, first) is narrowed too
    wide = search_against(3.2, first=10.0)
    low, high = wide.bracket
    assert high is not None and low < 3.2 <= high and high - low <= 1.0


def test_a_dead_below_an_alive_is_noise_and_alive_wins():
    search = IdleSearch(120.0)
    times = search.next_round()
    results = {t: t < 45 for t in times}
    noisy = times[2]  # a short idle time that "died": a lost probe
    results[noisy] = False
    search.record(results)
    low, high = search.bracket
    assert low > noisy and high is not None and low < 45 <= high
    assert len(search.anomalies) == 1 and f"{noisy:g} s" in search.anomalies[0]
    assert (noisy, False) in search.rounds[0].probes  # kept in the record
    while times := search.next_round():
        search.record({t: t < 45 for t in times})
    low, high = search.bracket
    assert high is not None and low < 45 <= high


def test_next_round_is_stable_until_recorded_and_a_missing_probe_is_retried():
    search = IdleSearch(60.0, parallel=4)
    assert search.next_round() == search.next_round()
    times = search.next_round()
    search.record({t: True for t in times[:-1]})  # the maximum's probe did not run
    assert 60.0 in search.next_round()
    with pytest.raises(ValueError):
        search.record({})
    with pytest.raises(ValueError, match="maximum"):
        IdleSearch(0.5)


def test_round_to_dict_round_trip():
    search = search_against(7.0)
    for r in search.rounds:
        assert Round.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_estimate_is_the_worst_case_and_grows_with_the_maximum():
    search = IdleSearch(120.0)
    estimate = search.estimate_seconds(app_timeout=5.0, setup_s=2.0)
    for timeout in (2.3, 7.0, 45.0, 100.0, 119.9, 500.0):
        done = search_against(timeout)
        assert estimate >= sum(r.longest + 7.0 for r in done.rounds)
    assert 120 + 7 <= estimate <= 6 * 127
    hours = IdleSearch(4 * 3600.0).estimate_seconds(app_timeout=5.0)
    assert hours > 4 * 3600 * 2
    assert duration_words(hours).endswith("min") and " h " in duration_words(hours)
    assert search.rounds == []  # estimating runs nothing


def profile_of(**values) -> Profile:
    """A profile with the given findings ("tcp.idle_timeout_s": value)."""
    profile = Profile(Device("fw", True, "the lab's firewall node fw", "linux driver over SSH root@10.0.9.1"))
    for key, value in values.items():
        section, name = key.split("__")
        setattr(getattr(profile, section), name, Finding(value, [f"probes/{name}.jsonl"]))
    return profile


def row(rows, key, req):
    (found,) = [r for r in rows if r.finding == key and r.req == req]
    return found


def test_profile_json_round_trip():
    profile = profile_of(
        tcp__expiry="rst-both",
        tcp__midstream_ack={"inside": "dropped", "outside": "admitted"},
        udp__lifetime_outbound_s=(29.5, 30.2),
        nat__mapping="endpoint-independent",
        nat__hairpinning=True,
        ftp__active="works",
        capacity__new_per_s=812.5,
    )
    profile.tcp.idle_timeout_s = Finding.from_search(search_against(45.0), ["probes/tcp.jsonl"], port=80)
    profile.tcp.idle_timeout_by_port["22"] = Finding([7440, None], ["probes/tcp22.jsonl"])
    profile.capacity.sessions = Finding(5000, probe={"bound": 5000, "bound_reached": True})
    profile.figures["the idle-time search"] = "plots/tcp_idle.png"
    text = profile.to_json()
    data = json.loads(text)
    assert data["tcp"]["idle_timeout_s"]["value"][1] is not None
    assert data["tcp"]["idle_timeout_s"]["probe"]["rounds"][0]["round"] == 1
    assert data["udp"]["lifetime_outbound_s"] == {
        "value": [29.5, 30.2],
        "evidence": ["probes/lifetime_outbound_s.jsonl"],
        "probe": {},
        "how": "",
        "notes": [],
    }
    assert Profile.from_json(text) == profile


def test_from_json_names_every_problem():
    data = json.loads(profile_of(tcp__expiry="rst-both").to_json())
    data["tcp"]["expiry"]["value"] = "rst-sometimes"
    data["udp"]["lifetime_outbound_s"]["value"] = [30, 10]
    data["nat"]["colour"] = {"value": "blue"}
    with pytest.raises(ConfigError) as caught:
        Profile.from_json(json.dumps(data))
    problems = caught.value.problems
    assert any(p.startswith("tcp.expiry") for p in problems), problems
    assert any(p.startswith("udp.lifetime_outbound_s") for p in problems), problems
    assert any(p.startswith("nat.colour") for p in problems), problems


def test_requirement_verdicts():
    rows = requirements(
        profile_of(
            tcp__idle_timeout_s=[7440, 7500],
            udp__lifetime_outbound_s=[299, 301],
            udp__lifetime_bidirectional_s=[119.2, 120.4],
            nat__mapping="address-and-port-dependent",
            nat__filtering="address-dependent",
            nat__hairpinning=False,
            tcp__expiry="silent",
        )
    )
    assert row(rows, "tcp.idle_timeout_s", "REQ-5").verdict == MEETS
    assert row(rows, "udp.lifetime_outbound_s", "REQ-5").verdict == MEETS
    assert row(rows, "udp.lifetime_bidirectional_s", "REQ-5").verdict == INCONCLUSIVE
    assert row(rows, "udp.lifetime_outbound_s", "REQ-5 c)").verdict == INCONCLUSIVE
    recommended = row(rows, "udp.lifetime_bidirectional_s", "REQ-5 c)")
    assert recommended.verdict == MISSES and recommended.wording == "departs from the recommendation"
    assert row(rows, "nat.mapping", "REQ-1").verdict == MISSES
    filtering = row(rows, "nat.filtering", "REQ-8")
    assert filtering.wording == "follows the recommendation" and "stricter" in filtering.note
    assert row(rows, "nat.hairpinning", "REQ-9").verdict == MISSES
    assert row(rows, "nat.tcp_mapping", "REQ-1").verdict == NOT_MEASURED
    assert row(rows, "tcp.expiry", "RST acceptance").verdict == NOT_APPLICABLE
    assert {r.rfc for r in rows} == {"RFC 4787", "RFC 5382", "RFC 5961"}

    short = requirements(profile_of(tcp__idle_timeout_s=[300, 301], nat__mapping="endpoint-independent"))
    assert row(short, "tcp.idle_timeout_s", "REQ-5").verdict == MISSES
    assert row(short, "nat.mapping", "REQ-1").verdict == MEETS
    stopped = requirements(profile_of(tcp__idle_timeout_s=[120, None]))
    assert row(stopped, "tcp.idle_timeout_s", "REQ-5").verdict == NOT_MEASURED


def test_no_nat_makes_nat_requirements_not_applicable():
    profile = profile_of(
        tcp__idle_timeout_s=[300, 301],
        nat__mapping="no-nat",
        nat__filtering="no-nat",
        tcp__expiry="rst-both",
        tcp__rst_acceptable={"client": True, "server": True},
    )
    rows = requirements(profile)
    timeout = row(rows, "tcp.idle_timeout_s", "REQ-5")
    assert timeout.verdict == NOT_APPLICABLE and "would miss" in timeout.note
    assert all(r.verdict == NOT_APPLICABLE for r in rows if r.rfc in ("RFC 4787", "RFC 5382"))
    assert row(rows, "tcp.expiry", "RST acceptance").verdict == MEETS
    profile.tcp.rst_acceptable = Finding({"client": True, "server": False})
    assert row(requirements(profile), "tcp.expiry", "RST acceptance").verdict == MISSES


def test_render_markdown_has_the_tables():
    profile = profile_of(
        tcp__idle_timeout_s=[44.7, 45.6],
        tcp__expiry="rst-client",
        nat__mapping="endpoint-independent",
        udp__lifetime_outbound_s=[29.5, 30.2],
    )
    profile.device = Device("vendor-fw", False, "ports inside=ens4 outside=ens5", "none (traffic only)")
    profile.figures["UDP lifetimes"] = "plots/udp_lifetimes.png"
    text = render_markdown(profile, requirements(profile))
    assert text.startswith("# Session behaviour profile: vendor-fw\n")
    assert "did not build" in text and "ports inside=ens4 outside=ens5" in text
    assert "| Behaviour | Measured | Evidence |" in text
    assert "| TCP established idle timeout | 44.7 s to 45.6 s | [probes/idle_timeout_s.jsonl]" in text
    assert "| RFC 5382 section 5 | REQ-5 | MUST |" in text and "**misses**" in text
    assert "## How each finding was measured" in text and "![UDP lifetimes](plots/udp_lifetimes.png)" in text
    assert "Not measured in this run:" in text and "{{" not in text


def test_figures_write_pngs(tmp_path):
    from lab.plot.characterize import capacity_figure, lifetimes_figure, search_figure

    search = search_against(45.0)
    paths = [
        search_figure(search.rounds, tmp_path / "search.png", "TCP idle timeout"),
        search_figure([r.to_dict() for r in search_against(500.0).rounds], tmp_path / "alive.png", "beyond"),
        lifetimes_figure([29.5, 30.2], [119.5, 120.4], tmp_path / "udp.png", "UDP lifetimes"),
        lifetimes_figure(None, [120, None], tmp_path / "udp_tcp.png", "lifetimes", tcp=[7440, 7500]),
        capacity_figure([100, 200, 400], [100, 200, 310], tmp_path / "cap.png", "capacity", bound=400),
        capacity_figure([], [], tmp_path / "none.png", "capacity"),
    ]
    for path in paths:
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_the_table_timeout_counts_only_sessions_seen_both_ways():
    from lab.characterize.probes import table_timeouts

    row = {"proto": "tcp", "dport": 9000, "sport": 40000, "state": "ESTABLISHED"}
    spans = {40000: (100.0, 110.0)}  # idle from 100 s to 110 s
    snapshots = [
        {"started": 101.0, "time": 101.2, "sessions": [{**row, "timeout": 1, "flags": ["ASSURED"]}]},
        # a dead probe's late data picked up mid-stream by a loose device: one way only
        {"time": 102.0, "sessions": [{**row, "timeout": 119, "flags": ["UNREPLIED"]}]},
        {"time": 103.0, "sessions": [{**row, "state": "TIME_WAIT", "timeout": 119, "flags": ["ASSURED"]}]},
    ]
    assert table_timeouts(snapshots, "tcp", 9000, spans) == {"established": 2.6}


def test_the_table_timeout_counts_down_from_the_last_packet_however_late_it_is_read():
    """A 2 s UDP lifetime read only in its last second (a busy machine reads late): the
    readings of 0 s left, 1.2-1.9 s after the last datagram, still say about 2 s."""
    from lab.characterize.probes import table_timeouts

    row = {"proto": "udp", "dport": 7000, "flags": ["UNREPLIED"], "timeout": 0}
    spans = {40000 + i: (100.0 + 10 * i, 104.0 + 10 * i) for i in range(4)}
    snapshots = [
        {"started": t0 + late - 0.05, "time": t0 + late + 0.05, "sessions": [{**row, "sport": sport}]}
        for (sport, (t0, _)), late in zip(spans.items(), (1.2, 1.5, 1.7, 1.9), strict=True)
    ]
    # readings outside a session's idle time, or of ports no probe used, say nothing
    snapshots.append({"time": 99.0, "sessions": [{**row, "sport": 40000, "timeout": 30}]})
    snapshots.append({"time": 101.0, "sessions": [{**row, "sport": 50000, "timeout": 30}]})
    assert table_timeouts(snapshots, "udp", 7000, spans) == {"unreplied": 2.1}
    assert table_timeouts(snapshots, "udp", 7001, spans) == {}


def test_a_mid_stream_segment_that_crosses_late_is_admitted_and_one_that_never_does_is_dropped(monkeypatch):
    """midstream waits (bounded) for its segments beyond the device: the inside one shows
    beyond only on the third reading of the live captures, the outside one never."""
    import contextlib

    from lab.characterize import probes
    from lab.packets import TcpSegment

    monkeypatch.setattr(probes, "CROSSING_WAIT", 0.5)
    monkeypatch.setattr(probes, "send_segment", lambda *a, **kw: None)
    ports = probes.Ports(range(20_000, 20_010))
    sent_in = TcpSegment("10.0.1.10", "10.0.2.10", 20_000, 9000, 7, 1000, "A", 0)
    sent_out = TcpSegment("10.0.2.10", "10.0.1.10", 20_001, 9000, 9, 1000, "A", 0)
    readings = []

    @contextlib.contextmanager
    def phase(name):
        def sides():
            readings.append(name)
            late = [sent_in] if len(readings) >= 3 else []
            return probes.Sides([sent_in], [sent_out, *late])

        yield sides

    result = probes.midstream(None, phase, "10.0.1.10", "10.0.2.10", 9000, ports)
    assert result["value"] == {"inside": "admitted", "outside": "dropped"}
    assert len(readings) > 3  # it went on waiting for the outside one until the window closed
