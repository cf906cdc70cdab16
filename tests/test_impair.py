"""Link impairments: Mininet-style options parsed and refused in one line, and the relay
element's scheduling (delay, jitter, loss, duplication, reordering) decided offline; a running
lab's impaired links and the controller's port map, on stand-ins for Mininet's objects."""

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from lab.config import Impairment, impairment_from
from lab.errors import ConfigError
from lab.impair import Alarm, Direction, Wheel


def test_mininet_style_options():
    imp = impairment_from("fw1-a1", {"delay": "25ms", "jitter": "500us", "loss": 2, "bw": 100})
    assert imp == Impairment(delay=0.025, jitter=0.0005, loss=2.0)
    assert impairment_from("a-b", {"delay": "1.5s"}).delay == 1.5
    assert not impairment_from("a-b", {}).active


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"delay": "-5ms"}, "link fw1-a1: delay '-5ms' is negative"),
        ({"loss": 101}, "link fw1-a1: loss 101 is not a percentage (0-100)"),
        ({"delay": "10 parsecs"}, "link fw1-a1: delay '10 parsecs' is not a duration with a unit"),
        ({"delay": 5}, "link fw1-a1: delay 5 is not a duration with a unit"),
        ({"jitter": "5ms"}, "link fw1-a1: jitter needs a delay"),
        ({"delay": "1ms", "jitter": "5ms"}, "link fw1-a1: jitter '5ms' is larger than the delay '1ms'"),
    ],
)
def test_bad_values_are_refused_naming_the_link(options, problem):
    with pytest.raises(ConfigError) as caught:
        impairment_from("fw1-a1", options)
    assert str(caught.value).startswith(problem)


def test_every_problem_at_once():
    with pytest.raises(ConfigError) as caught:
        impairment_from("a-b", {"delay": "-1ms", "loss": 200, "duplicate": -1})
    assert len(caught.value.problems) == 3


def plans(imp: Impairment, n: int = 20000) -> list[list[float]]:
    direction = Direction(imp, random.Random(7))
    return [direction.plan(100.0) for _ in range(n)]


def test_delay_and_jitter():
    sent = [p[0] - 100.0 for p in plans(Impairment(delay=0.010, jitter=0.002))]
    assert min(sent) >= 0.008 and max(sent) <= 0.012
    assert statistics.median(sent) == pytest.approx(0.010, abs=0.0002)


def test_loss_duplication_and_reordering_rates():
    lost = sum(1 for p in plans(Impairment(loss=5)) if not p) / 20000
    assert lost == pytest.approx(0.05, abs=0.01)
    doubled = sum(1 for p in plans(Impairment(duplicate=10)) if len(p) == 2) / 20000
    assert doubled == pytest.approx(0.10, abs=0.01)
    early = sum(1 for p in plans(Impairment(delay=0.01, reorder=20)) if p[0] == 100.0) / 20000
    assert early == pytest.approx(0.20, abs=0.01)


def test_the_wheel_sends_in_time_order_and_ties_in_arrival_order():
    wheel: Wheel[str] = Wheel()
    for when, name in ((3.0, "late"), (1.0, "first"), (1.0, "second"), (2.0, "middle")):
        wheel.add(when, name)
    assert wheel.next_time() == 1.0
    assert wheel.due(0.5) == []
    assert wheel.due(2.0) == ["first", "second", "middle"]
    assert len(wheel) == 1 and wheel.due(10.0) == ["late"] and wheel.next_time() is None


def test_alarm_learns_how_late_timers_wake_and_wakes_that_much_earlier():
    alarm = Alarm(max_early=0.002)
    assert alarm.timeout(None, 0.0) is None  # nothing waiting: sleep until a frame comes
    now = 0.0
    for _ in range(100):  # every sleep ends 0.5 ms after the time asked for
        timeout = alarm.timeout(now + 0.010, now)
        assert timeout is not None
        now += timeout + 0.0005
        alarm.woke(now, by_timer=True)
        now += 0.010
    assert alarm.early == pytest.approx(0.0005, rel=0.01)
    assert alarm.timeout(1.010, 1.0) == pytest.approx(0.0095, rel=1e-4)


def test_alarm_spins_when_due_soon_and_learns_only_from_real_sleeps():
    alarm = Alarm(max_early=0.002, early=0.001)
    assert alarm.timeout(1.0005, 1.0) == 0.0  # due within the margin: spin, no sleep
    alarm.woke(1.0004, by_timer=True)
    assert alarm.early == 0.001  # a spin teaches nothing
    alarm.timeout(2.0, 1.0)
    alarm.woke(1.5, by_timer=False)  # a frame arrived first: not the timer's lateness
    assert alarm.early == 0.001
    for _ in range(200):  # a very late timer: the margin stays capped
        alarm.woke(alarm.timeout(5.0, 1.0) + 1.0 + 0.05, by_timer=True)  # type: ignore[operator]
    assert alarm.early == 0.002


def test_impairments_read_as_a_report_says_them():
    assert Impairment().describe() == "none"
    assert Impairment(delay=0.025, jitter=0.005, loss=2).describe() == "25 ms +/- 5 ms, loss 2 %"
    assert Impairment(reorder=10, duplicate=0.5).describe() == "reorder 10 %, duplicate 0.5 %"


def test_a_case_sees_the_settings_its_link_had_during_it():
    from lab.links import Element

    quiet = {"a": Impairment(), "b": Impairment()}
    element = Element("imp0", "server", "s2", quiet)
    element.record(100.0)  # built with no impairment
    assert element.during(110.0, 120.0) == []  # nothing happened to this case's traffic
    element.impairments = {"a": Impairment(delay=0.025), "b": Impairment(delay=0.025)}
    element.record(121.0)
    element.impairments = quiet
    element.record(125.0)
    assert element.during(120.0, 130.0) == [
        {"from": 0.0, "server->s2": "none", "s2->server": "none"},
        {"from": 1.0, "server->s2": "25 ms", "s2->server": "25 ms"},
        {"from": 5.0, "server->s2": "none", "s2->server": "none"},
    ]
    assert element.during(130.0, 140.0) == []


def test_a_running_link_changes_one_way_or_both_and_keeps_its_history(tmp_path):
    from lab.impaired import LinkImpairments
    from lab.links import NetemLink

    impairments = LinkImpairments(tmp_path)
    quiet = {"a": Impairment(), "b": Impairment()}
    link = NetemLink("h1-s1", "h1", "s1", quiet)
    ran: list[tuple[str, list[str]]] = []
    link.run = lambda node, argv: ran.append((node, argv))
    link.ends = {"a": ("h1", "h1-eth0", "root"), "b": ("sl0000s1", "sl0000s1-eth1", "root")}
    impairments.links.append(link)
    impairments.impair("s1", "h1", one_way=True, delay="5ms")  # from s1: side b
    assert link.impairments == {"a": Impairment(), "b": Impairment(delay=0.005)}
    assert [node for node, _ in ran] == ["h1", "sl0000s1"] and "5000us" in ran[1][1]
    assert impairments.find("h1", "s1") == (link, True)
    with pytest.raises(ConfigError, match=r"link h1-h2: not impairable \(.*: h1-s1\)"):
        impairments.impair("h1", "h2", delay="1ms")
    with pytest.raises(ConfigError, match="link h1-s1: unknown impairment rate"):
        impairments.impair("h1", "s1", rate=5)
    saved = json.loads((tmp_path / "links.json").read_text())
    assert [entry["s1->h1"]["delay"] for entry in saved["h1-s1"]] == [0.005]
    assert impairments.elements == []


class _Thing:
    """A stand-in for a Mininet node, interface or link: its attributes, hashable by identity."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


def test_the_port_map_names_peers_through_impairment_elements():
    from lab.impaired import LinkImpairments
    from lab.links import Element
    from lab.portmap import port_map

    def wire(x: _Thing, y: _Thing) -> None:
        x.link = y.link = _Thing(intf1=x, intf2=y)

    sw1, sw2, fw, imp = (_Thing(name=n) for n in ("sl0000s1", "sl0000s2", "fw1", "imp0"))
    owners = {"s1-1": sw1, "s1-2": sw1, "s2-1": sw2, "fw1-in": fw, "imp0-a": imp, "imp0-b": imp}
    ends = {name: _Thing(name=name, node=node) for name, node in owners.items()}
    wire(ends["s1-1"], ends["fw1-in"])
    wire(ends["s1-2"], ends["imp0-a"])
    wire(ends["imp0-b"], ends["s2-1"])
    imp.intfList = lambda: [ends["imp0-a"], ends["imp0-b"]]
    sw1.ports, sw1.dpid = {ends["s1-1"]: 1, ends["s1-2"]: 2}, "0000000000000001"
    sw2.ports, sw2.dpid = {ends["s2-1"]: 7}, "000000000000000a"
    impairments = LinkImpairments(Path("/nonexistent"))
    impairments.links.append(Element("imp0", "s1", "s2", {"a": Impairment(), "b": Impairment()}))
    net = _Thing(switches=[sw1, sw2])
    names = {"s1": "sl0000s1", "s2": "sl0000s2", "fw1": "fw1"}
    assert port_map(net, names, impairments.beyond) == {
        "s1": {"dpid": 1, "ports": {"fw1-in": 1, "s2": 2}},
        "s2": {"dpid": 10, "ports": {"s1": 7}},
    }


@pytest.fixture
def relay():
    """The relay's forwarding on datagram socket pairs standing in for its two interfaces:
    what the test writes on `wire["a"]` arrives on the relay's side a (frames as bytes)."""
    import socket

    from lab.agents.impair_relay import Relay

    pairs = {side: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for side in ("a", "b")}
    for relay_end, wire_end in pairs.values():
        relay_end.setblocking(False)
        wire_end.setblocking(False)
    made = Relay({side: ends[0] for side, ends in pairs.items()}, seed=7)
    made.wire = {side: ends[1] for side, ends in pairs.items()}  # type: ignore[attr-defined]
    yield made
    for ends in pairs.values():
        for sock in ends:
            sock.close()


def _arrived(sock: Any) -> list[bytes]:
    frames = []
    while True:
        try:
            frames.append(sock.recv(65536))
        except BlockingIOError:
            return frames


def test_a_direction_without_impairment_forwards_each_frame_as_it_is_read(relay):
    for n in range(5):
        relay.wire["a"].send(b"frame %d" % n)
    relay.read("a")
    assert len(relay.wheel) == 0  # never planned: no wheel, no timer
    assert _arrived(relay.wire["b"]) == [b"frame %d" % n for n in range(5)]
    assert relay.stats["a"] == {"received": 5, "sent": 5, "lost": 0}


def test_a_delayed_direction_holds_its_frames_until_due(relay):
    import time

    relay.configure(json.dumps({"a": {"delay": 0.05}}))
    relay.wire["a"].send(b"late")
    relay.read("a")
    assert _arrived(relay.wire["b"]) == [] and len(relay.wheel) == 1
    relay.send_due(time.monotonic() + 0.05)
    assert _arrived(relay.wire["b"]) == [b"late"]
    assert relay.stats["a"] == {"received": 1, "sent": 1, "lost": 0}


def test_frames_due_before_a_change_to_none_still_leave_first(relay):
    import time

    relay.configure(json.dumps({"a": {"delay": 0.001}}))
    relay.wire["a"].send(b"delayed")
    relay.read("a")
    relay.configure(json.dumps({"a": {}}))
    time.sleep(0.002)  # the delayed frame is due now
    relay.wire["a"].send(b"undelayed")
    relay.read("a")
    assert _arrived(relay.wire["b"]) == [b"delayed", b"undelayed"]


def test_a_busy_side_is_read_a_batch_at_a_time(relay):
    from lab.agents.impair_relay import BATCH

    for n in range(BATCH + 3):
        relay.wire["b"].send(b"%d" % n)
    relay.read("b")
    assert len(_arrived(relay.wire["a"])) == BATCH  # the rest waits for the next round
    relay.read("b")
    assert len(_arrived(relay.wire["a"])) == 3


def test_the_relay_keeps_how_late_it_got_to_a_due_frame(relay):
    import time

    relay.configure(json.dumps({"a": {"delay": 0.001}}))
    relay.wire["a"].send(b"frame")
    relay.read("a")
    relay.send_due(time.monotonic() - 1.0)  # nothing due yet: nothing sent, nothing late
    assert relay.late == 0.0 and len(relay.wheel) == 1
    relay.send_due(time.monotonic() + 1.0)  # as if the relay had stalled for a second
    assert 0.99 <= relay.late <= 1.1 and _arrived(relay.wire["b"]) == [b"frame"]
