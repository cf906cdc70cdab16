"""Impaired links without netem: the lab's element delays and drops real traffic as the
topology asks, and a case can change it while the lab runs."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from mininet.topo import Topo

from lab.host_pairs import add_host_pairs
from lab.results import Case

DELAY = 0.010  # one way, each direction: the RTT grows by twice this
LOSS = 10  # percent, one way (h1 to s1)


RATE = 20  # Mbit/s, the h3-s1 link's rate limit (HTB, as TCLink's bw)


class ImpairedTopo(Topo):
    """h1 -[impairable]- s1 - h2 and h3 -[impairable, 20 Mbit/s]- s1 - h4: links that name an
    impairment (0 ms) get an element the cases change while the lab runs."""

    def build(self):
        add_host_pairs(self, {"delay": "0ms"}, {"delay": "0ms", "bw": RATE})


def impaired_lab(run_dir, module: str):
    """ImpairedTopo's lab in `<module>-lab` (this module's, and test_links_rate's)."""
    from lab.net import Lab

    with Lab(ImpairedTopo(), run_dir / f"{module}-lab") as running:
        yield running


@pytest.fixture(scope="module")
def lab(run_dir):
    yield from impaired_lab(run_dir, "test_links")


def rtts(lab, count: int, interval: float, src: str = "h1", dst: str = "h2") -> tuple[list[float], int]:
    """Round-trip times (ms) of `count` pings `src` -> `dst`, and how many were sent."""
    out = lab.run(
        src, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", lab.ip(dst)], check=False
    )
    return [float(x) for x in re.findall(r"time=([\d.]+)", out)], count


def test_delay_is_what_the_link_asks(lab, case: Case):
    """Delay: the element adds the configured delay to each direction (ping, median and p99)"""
    base, _ = rtts(lab, 300, 0.005)
    lab.impair("h1", "s1", delay=f"{DELAY * 1000:g}ms")
    delayed, _ = rtts(lab, 500, 0.005)
    # The element's delay is read from the smallest RTTs, the path's own time, which load
    # only adds to: beside another worker's labs the medians moved by up to 1.2 ms (the
    # clean-clone run at 36a595a) while the element held the delay.
    added = min(delayed) - min(base)
    added_median = statistics.median(delayed) - statistics.median(base)
    want = 2 * DELAY * 1000
    tolerance = 0.5 + 0.02 * want
    case.figure(
        "RTT through the element, no delay: smallest, median (ms)",
        [min(base), round(statistics.median(base), 3)],
    )
    case.figure(
        f"RTT with {DELAY * 1000:g} ms each way: smallest, median, p99 (ms)",
        [
            min(delayed),
            round(statistics.median(delayed), 3),
            round(sorted(delayed)[int(0.99 * len(delayed))], 3),
        ],
    )
    case.figure("added RTT: smallest, median (ms)", [round(added, 3), round(added_median, 3)])
    (case.path / "rtts.json").write_text(json.dumps({"base": base, "delayed": delayed}))
    case.keep(case.path / "rtts.json", "every ping's RTT")
    assert abs(added - want) <= tolerance, f"added RTT (smallest) {added:.3f} ms, configured {want:g} ms"
    assert added_median >= want - tolerance, (
        f"the median RTT grew by {added_median:.3f} ms only: released early"
    )


def test_loss_one_way_and_a_change_while_running(lab, case: Case):
    """Loss: one direction loses the configured share; a change while the lab runs takes effect"""
    lab.impair("h1", "s1", delay="0ms")
    lab.impair("h1", "s1", one_way=True, loss=LOSS)
    got, sent = rtts(lab, 5000, 0.001)
    lost = 100 * (sent - len(got)) / sent
    case.figure(f"pings lost with {LOSS} % loss h1 -> s1 (%)", round(lost, 2))
    assert abs(lost - LOSS) <= 1.5, f"{lost:.2f} % lost of {sent}, configured {LOSS} %"
    lab.impair("h1", "s1", loss=0)
    got, sent = rtts(lab, 200, 0.005)
    case.figure("pings lost after the loss was taken off", sent - len(got))
    assert len(got) == sent, f"{sent - len(got)} of {sent} lost after the loss was set to 0"
    history = json.loads((lab.paths.root / "links.json").read_text())["h1-s1"]
    case.figure("changes recorded for h1-s1", len(history))
    assert history[-1]["h1->s1"]["loss"] == 0 and any(h["h1->s1"]["loss"] == LOSS for h in history)


def test_bad_impairment_is_refused_naming_the_link(lab):
    from lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"link h1-s1: loss 120 is not a percentage"):
        lab.impair("h1", "s1", loss=120)
    with pytest.raises(ConfigError, match=r"link s1-h2: not impairable"):
        lab.impair("s1", "h2", delay="1ms")
