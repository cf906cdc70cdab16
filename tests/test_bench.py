"""The benchmarks' pure helpers: ping and iperf3 output read as data, the statistics quoted."""

import pytest

from bench import measure

PING = """PING 10.0.9.2 (10.0.9.2) 56(84) bytes of data.
64 bytes from 10.0.9.2: icmp_seq=1 ttl=64 time=0.412 ms
64 bytes from 10.0.9.2: icmp_seq=3 ttl=64 time=10.5 ms
64 bytes from 10.0.9.2: icmp_seq=2 ttl=64 time=201 ms
64 bytes from 10.0.9.2: icmp_seq=2 ttl=64 time=201 ms (DUP!)

--- 10.0.9.2 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 3ms
"""


def test_ping_output_as_replies_in_arrival_order():
    replies = measure.ping_replies(PING)
    assert replies == [
        measure.Reply(1, 0.412, False),
        measure.Reply(3, 10.5, False),
        measure.Reply(2, 201.0, False),
        measure.Reply(2, 201.0, True),
    ]
    assert measure.ping_sent(PING) == 4
    assert measure.lost_share(replies, 4) == 25.0
    assert measure.duplicate_share(replies, 4) == 25.0
    assert measure.prompt_share(replies, 5.0) == 25.0
    with pytest.raises(ValueError, match="no ping statistics"):
        measure.ping_sent("ping: connect: Network is unreachable")


def test_late_arrivals_are_the_overtaken_ones():
    assert measure.late_share([1, 2, 3, 4]) == 0.0
    assert measure.late_share([3, 1, 2, 4]) == 50.0  # 1 and 2 came after 3
    assert measure.late_share([]) == 0.0


def test_percentiles_by_nearest_rank():
    values = list(range(1, 101))
    assert measure.percentile(values, 0.99) == 99
    assert measure.percentile(values, 0.01) == 1
    assert measure.summary([1.0, 2.0, 3.0])["median"] == 2.0
    with pytest.raises(ValueError):
        measure.percentile([], 0.5)


def test_iperf3_reports():
    assert measure.iperf_tcp({"end": {"sum_received": {"bits_per_second": 2.5e9}}}) == 2.5
    udp = {"end": {"sum_received": {"seconds": 2.0, "packets": 1000, "lost_packets": 10}}}
    assert measure.iperf_udp(udp) == {"sent_pps": 500, "delivered_pps": 495, "lost_percent": 1.0}
    older = {"end": {"sum": {"seconds": 1.0, "packets": 0, "lost_packets": 0}}}
    assert measure.iperf_udp(older)["lost_percent"] == 100.0


def test_paired_alternates_which_goes_first_and_takes_the_median_ratio():
    from bench.paired import Figure, paired, table

    calls = []
    lab_times, base_times = iter([1.2, 1.0, 1.4]), iter([1.0, 1.0, 1.0])

    def lab():
        calls.append("lab")
        return next(lab_times)

    def base():
        calls.append("base")
        return next(base_times)

    figure = paired(Figure("up+down", "s", baseline_name="raw", max_ratio=1.1), lab, base, 3)
    assert calls == ["lab", "base", "base", "lab", "lab", "base"]
    assert figure.ratio == pytest.approx(1.2)  # pairs 1.2, 1.0, 1.4
    assert figure.met is False and figure.target == "<= 1.1x"
    row = figure.to_dict()
    assert row["now"] == "1.2 (1-1.4)" and row["base"] == "1 (1-1)"
    text = table("lifecycle", [row])
    assert "| up+down (s) | 1.2 (1-1.4) | 1 (1-1) raw | 1.20x | <= 1.1x | **no** |" in text


def test_figures_without_a_baseline_or_target():
    from bench.paired import Figure, paired

    figure = paired(Figure("idle CPU", "cores", max_value=0.05), lambda: 0.02, None, 3)
    assert figure.baseline == [] and figure.ratio is None and figure.met is True
    assert paired(Figure("where", "s"), lambda: 5.0, None, 1).met is None
    assert Figure("rate", "1/s", min_ratio=0.5, samples=[40.0], baseline=[100.0]).met is False


def test_phases_table_puts_lab_and_baseline_side_by_side():
    from bench.paired import phases_table

    text = phases_table({"s1": {"lab (ms)": {"build": 120.0, "drawing": 80.5}, "raw (ms)": {"build": 110.0}}})
    assert "| phase | lab (ms) | raw (ms) |" in text
    assert "| build | 120.0 | 110.0 |" in text and "| drawing | 80.5 |  |" in text


def test_suite_time_per_scenario_from_the_cases_phases():
    from bench.suite import scenario_times

    def case(name, setup, call, teardown, margins=()):
        figures = {"client timeout margins": [{"margin (s)": m} for m in margins]} if margins else {}
        return {
            "name": name,
            "phases": {"setup": setup, "call": call, "teardown": teardown},
            "figures": figures,
        }

    cases = [
        case("test_s1.a", 5.0, 2.0, 0.5, [0.9]),
        case("test_s1.b", 0.25, 3.0, 1.5, [0.7, 2.5]),
        case("test_s2.a", 8.0, 1.0, 4.0),
    ]
    times = scenario_times(cases)
    assert times["test_s1"] == {
        "cases": 2,
        "lab start": 5.0,
        "case bodies": 5.0,
        "per-case harness": 0.8,
        "lab stop": 1.5,
        "smallest client timeout margin (s)": 0.7,
    }
    assert times["test_s2"]["per-case harness"] == 0.0
    assert times["test_s2"]["smallest client timeout margin (s)"] is None


def test_suite_groups_a_scenarios_modules_by_their_prefix():
    from bench.suite import scenario_of, scenario_times

    def case(name, setup, call, teardown):
        return {"name": name, "phases": {"setup": setup, "call": call, "teardown": teardown}}

    cases = [
        case("test_s1_keepalive.a", 5.0, 2.0, 0.5),
        case("test_s1_keepalive.b", 0.5, 1.0, 1.5),
        case("test_s1_over_wan.a", 4.0, 3.0, 2.0),
        case("test_links.a", 1.0, 1.0, 1.0),
    ]
    times = scenario_times(cases)
    assert list(times) == ["test_s1", "test_links"]
    assert times["test_s1"] == {
        "cases": 3,
        "lab start": 9.0,  # each module builds its own lab
        "case bodies": 6.0,
        "per-case harness": 1.0,
        "lab stop": 3.5,
        "smallest client timeout margin (s)": None,
    }
    assert scenario_of("test_s12_new_thing") == "test_s12" and scenario_of("test_cli_lab") == "test_cli_lab"


def test_hostile_rounds_have_their_own_ports_apart_from_the_frames():
    from bench import hostile

    plan = hostile.port_plan()  # every lab's: each lab is fresh
    blocks = plan.blocks()
    assert len(blocks) == hostile.WARMUP_BURSTS + 3 * hostile.ROUNDS  # before, after, settled
    assert all(len(b) == hostile.SESSIONS for b in (*plan.before, *plan.after, *plan.settled))
    assert sum(len(b) for b in plan.warmup) == 300  # three times the first version's warm-up
    used = [port for b in blocks for port in b]
    assert len(used) == len(set(used)) and not set(used) & set(hostile.FUZZ_PORTS)
    assert hostile.port_problems(plan) == []
    assert max(used) < hostile.PORTS_BELOW and max(hostile.FUZZ_PORTS) < hostile.PORTS_BELOW
    crowded = hostile.port_problems(plan, fuzz_ports=range(10_500, 11_000))
    assert crowded == ["before block 0 (10000-10999) overlaps the frames' ports"]
    too_many = hostile.port_problems(hostile.port_plan(rounds=12))  # 24,000 ports of rounds
    assert "after block 10: 32000-32999 is outside 1024-31999" in too_many  # the ephemeral range
    warm_into_rounds = hostile.port_problems(hostile.port_plan(warmup=3_000))
    assert "warm-up block 2 (8000-10999) overlaps before block 0" in warm_into_rounds


def test_hostile_pairs_alternate_which_measurement_goes_first():
    from bench.hostile import orders

    assert orders(3) == [("control", "hostile"), ("hostile", "control"), ("control", "hostile")]
    assert orders(2) == [("control", "hostile"), ("hostile", "control")]
    assert orders(0) == []


def test_hostile_round_rate_spans_its_sessions_not_the_command():
    from bench.hostile import round_rate

    records = [
        {"wall_start": 100.0, "elapsed": 0.5, "data_ok": True},
        {"wall_start": 100.5, "elapsed": 1.5, "data_ok": True},  # the last to end, at 102.0
        {"wall_start": 101.0, "elapsed": 0.5, "data_ok": False},
    ]
    assert round_rate(records, "data_ok") == {"completed": 2, "failed": 1, "seconds": 2.0, "rate": 1.0}
    http = [
        {"wall_start": 5.0, "elapsed": 0.25, "ok": True},
        {"wall_start": 5.25, "elapsed": 0.25, "ok": True},
    ]
    assert round_rate(http, "ok")["rate"] == 4.0
    assert round_rate([], "ok") == {"completed": 0, "failed": 0, "seconds": 0.0, "rate": 0.0}


def _measurement(before, after, sent=0, failed=0, warmup=(500.0, 900.0, 1000.0), settled=None, flows=0):
    def side(values):
        return [{"rate": v, "failed": failed} for v in values]

    return {
        "quiet": {"waited (s)": 1.0 if sent else 2.0, "busy": 0.1, "quiet": True},
        "warm-up": side(warmup),
        "before": side(before),
        "gap": {"sent": sent},
        "after": side(after),
        "residue": {
            "datapath flows": flows,
            "resolving": flows // 20,
            "drained (s)": 10.0 if flows else 0.3,
            "left after the wait": 0,
        },
        "settled": side(after if settled is None else settled),
    }


def _pair(before, after, control_before, control_after, sent=10_000, first="control", settled=None):
    return {
        "first": first,
        "control": _measurement(control_before, control_after),
        "hostile": _measurement(before, after, sent, failed=1, settled=settled, flows=10_000),
    }


def test_hostile_ratio_is_relative_to_the_same_pairs_control():
    from bench.hostile import pair_ratios, side_ratio

    # the lab drifts down 20 % over the gap with or without frames: the frames cost nothing
    drifting = _pair([1000, 500, 800], [800, 400, 640], [900, 1000, 1100], [720, 800, 880])
    assert side_ratio(drifting["hostile"]) == pytest.approx(0.8)
    assert pair_ratios(drifting) == pytest.approx(
        {"control": 0.8, "hostile": 0.8, "relative": 1.0}
        | {"control settled": 0.8, "hostile settled": 0.8, "relative settled": 1.0}
    )
    # pairs 0.95, 1.2, 0.5 round by round: their median, not the medians' ratio (600 / 800)
    rounds = _pair([1000, 500, 800], [950, 600, 400], [1000] * 3, [1000] * 3)
    assert pair_ratios(rounds)["hostile"] == pytest.approx(0.95)
    dead = _pair([1000] * 3, [900] * 3, [0] * 3, [1000] * 3)  # no control round completed
    assert {k: v for k, v in pair_ratios(dead).items() if "settled" not in k} == {
        "control": None, "hostile": pytest.approx(0.9), "relative": None}  # fmt: skip
    # slower while the residue drains, back once it has: the two ratios apart
    recovering = _pair([1000] * 3, [800] * 3, [1000] * 3, [1000] * 3, settled=[980] * 3)
    got = pair_ratios(recovering)
    assert got["relative"] == pytest.approx(0.8) and got["relative settled"] == pytest.approx(0.98)
    older = {"control": _measurement([1000] * 3, [1000] * 3), "hostile": _measurement([1000] * 3, [900] * 3)}
    for m in older.values():
        del m["settled"]  # a result from before the settled rounds
    got = pair_ratios(older)
    assert got["relative settled"] is None and got["relative"] == pytest.approx(0.9)


def test_hostile_figures_judge_the_median_relative_ratio_over_pairs():
    from bench.hostile import figures

    pairs = [
        _pair([1000] * 3, [800] * 3, [1000] * 3, [1000] * 3),  # 0.8 / 1.0
        _pair([1000] * 3, [800] * 3, [1000] * 3, [850] * 3, first="hostile"),  # 0.8 / 0.85 = 0.94
        _pair([1000] * 3, [1100] * 3, [1000] * 3, [1000] * 3),  # 1.1 / 1.0
    ]
    relative, settled, hostile, control, flows, resolving, drained, left, calm, sent, failed = figures(
        "s4-sdn-balancer", {"pairs": pairs}, 10_000
    )
    assert calm.samples == [1.0] * 3 and calm.baseline == [2.0] * 3 and calm.met is None
    assert "3 pairs, 90% interval of the median 0.80-1.10x" in relative.what
    assert settled.ratio == relative.ratio and settled.target == ">= 0.9x" and "drained" in settled.what
    assert flows.samples == [10_000.0] * 3 and flows.baseline == [0.0] * 3 and flows.met is None
    assert resolving.samples == [500.0] * 3 and drained.samples == [10.0] * 3 and drained.met is None
    assert left.met is True and left.target == "<= 0 "  # the settled rounds ran on a drained lab
    assert relative.samples == pytest.approx([0.8, 0.8, 1.1])  # each pair's raw ratios, kept
    assert relative.baseline == pytest.approx([1, 0.85, 1])
    assert relative.ratio == pytest.approx(0.8 / 0.85) and relative.met is True
    assert relative.target == ">= 0.9x" and relative.to_dict()["baseline_name"] == "control (idle gap)"
    assert hostile.ratio == pytest.approx(0.8) and hostile.met is None  # raw: every round, shown
    assert len(hostile.samples) == 9 and control.met is None and control.baseline_name == "before the gap"
    assert sent.met is True and failed.samples == [1.0] * 9 and failed.met is None
    slower = [_pair([1000] * 3, [850] * 3, [1000] * 3, [1000] * 3, sent=s) for s in (10_000, 9_999, 10_000)]
    rows = figures("s2-fabric", {"pairs": slower}, 10_000)
    assert rows[0].ratio == pytest.approx(0.85) and rows[0].met is False
    assert rows[9].samples == [9_999.0] and rows[9].met is False  # one lab missed a frame


def test_hostile_median_interval_narrows_with_more_pairs():
    from bench.hostile import median_interval

    three = [0.8, 1.05, 2.2]
    low, high = median_interval(three)
    assert (low, high) == median_interval(three)  # a fixed seed: the same interval every time
    assert low == 0.8 and high == 2.2  # three values: the median can be any of them
    eight = [0.92, 1.05, 0.97, 1.1, 0.88, 1.01, 0.99, 1.04]
    low8, high8 = median_interval(eight)
    assert 0.88 <= low8 <= 1.0 <= high8 <= 1.1 and high8 - low8 < high - low
    assert median_interval([1.0] * 5) == (1.0, 1.0)


def test_hostile_lab_starts_on_quiet_cpus_with_a_bounded_wait(monkeypatch):
    from bench import hostile
    from lab import machine_load

    busy = iter([0.9, 0.6, 0.1])  # a previous lab's removal, then quiet
    readings = iter(range(100))
    monkeypatch.setattr(machine_load.CpuTimes, "read", classmethod(lambda cls: next(readings)))
    monkeypatch.setattr(machine_load, "shares", lambda before, after: (0.0, next(busy)))
    got = hostile.quiet(window=0.01)
    assert got["busy"] == 0.1 and got["quiet"] is True and got["waited (s)"] < hostile.QUIET_WAIT
    monkeypatch.setattr(machine_load, "shares", lambda before, after: (0.0, 0.9))
    monkeypatch.setattr(hostile, "QUIET_WAIT", 0.05)
    got = hostile.quiet(window=0.01)  # never quiet: the wait ends, and says so
    assert got["quiet"] is False and got["busy"] == 0.9 and got["waited (s)"] >= 0.05


def test_hostile_residue_is_the_gaps_datapath_flows_until_they_expire(monkeypatch):
    import time

    import lab.procs
    from bench import hostile

    dump = (
        "flow-dump from the main thread:\n"
        "ufid:cb3add5f-5e94-4b45-b845-6ece38b4d524, skb_priority(0/0),in_port(s1-eth4), actions:2\n"
        "ufid:12cf7aa4-c24c-4a7c-91f7-dc37a4bce8cc, recirc_id(0x5ae),in_port(s1-eth3), actions:drop\n"
    )
    monkeypatch.setattr(lab.procs, "host_run", lambda argv, **_: dump)
    assert hostile.datapath_flows() == {
        "cb3add5f-5e94-4b45-b845-6ece38b4d524",
        "12cf7aa4-c24c-4a7c-91f7-dc37a4bce8cc",
    }
    readings = iter([{"a", "b", "old"}, {"b", "old"}, {"old", "new"}])
    monkeypatch.setattr(hostile, "datapath_flows", lambda: next(readings))
    monkeypatch.setattr(hostile, "resolving", lambda lab: 0)
    ended = time.monotonic()
    got = hostile.drained(None, {"a", "b"}, ended)  # gone at the third reading; "new" is a later flow
    assert 0 <= got["drained (s)"] < hostile.SETTLE_WAIT and got["left after the wait"] == 0
    monkeypatch.setattr(hostile, "datapath_flows", lambda: {"a", "new"})
    monkeypatch.setattr(hostile, "resolving", lambda lab: 2)
    monkeypatch.setattr(hostile, "SETTLE_WAIT", 0.3)
    got = hostile.drained(None, {"a"}, time.monotonic())  # bounded: what is left is kept, not raised
    assert got["left after the wait"] == 3 and got["drained (s)"] >= 0.3


def test_hostile_plot_draws_every_targets_pairs(tmp_path):
    pytest.importorskip("matplotlib")
    from bench.hostile import plot

    two = {"pairs": [_pair([1000] * 2, [900] * 2, [1000] * 2, [990] * 2)] * 2}
    one = {"pairs": [_pair([1000] * 2, [900] * 2, [0] * 2, [990] * 2)]}  # a ratio missing
    data = {
        "targets": {"s5-firewall": two, "s2-fabric": one},
        "rounds": 2,
        "sessions": 1000,
        "frames": 10_000,
    }
    plot(data, tmp_path / "hostile.png")
    assert (tmp_path / "hostile.png").stat().st_size > 0


def test_hostile_traffic_tallies_each_targets_completed_field():
    from testcases.test_hostile_traffic import TARGETS, tally

    records = [{"ok": True, "data_ok": False}, {"ok": False, "data_ok": True}, {"ok": True, "data_ok": True}]
    assert tally(TARGETS["s4-sdn-balancer"], records) == (2, 1)  # HTTP: ok
    assert tally(TARGETS["s5-firewall"], records) == (2, 1)  # echo: data_ok
    assert tally(TARGETS["s2-fabric"], records[:1]) == (0, 1)


def test_stall_reads_each_windows_largest_round_trip():
    from bench.stall import largest_rtt, replies

    text = (
        "PING 10.9.0.3 (10.9.0.3) 56(84) bytes of data.\n"
        "[1000.100000] 64 bytes from 10.9.0.3: icmp_seq=1 ttl=64 time=0.210 ms\n"
        "[1000.500000] 64 bytes from 10.9.0.3: icmp_seq=2 ttl=64 time=331 ms\n"
        "[1002.000000] 64 bytes from 10.9.0.3: icmp_seq=3 ttl=64 time=25.4 ms\n"
    )
    answered = replies(text)
    assert answered == [(1000.1, 0.21), (1000.5, 331.0), (1002.0, 25.4)]
    assert largest_rtt(answered, 1000.0, 1001.0) == 331.0
    assert largest_rtt(answered, 1001.0, 1003.0) == 25.4
    assert largest_rtt(answered, 2000.0, 2001.0) == 0.0
