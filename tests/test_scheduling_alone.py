"""testcases/scheduling.py's xdist scheduler, driven with stand-in workers (no processes):
every test runs once, in scopes; a module that needs the machine to itself runs with no
other worker holding work, and the workers all end."""

from __future__ import annotations

import types

import pytest
import xdist.scheduler.loadscope as loadscope

from testcases.scheduling import scheduler

COLLECTION = [
    "testcases/test_s4_l7.py::test_a",
    "testcases/test_s4_l7.py::test_b",
    "testcases/test_s3_alg.py::test_c",
    "testcases/test_s6_known_firewall.py::test_p[x]",  # BY_CASE: a scope each
    "testcases/test_s6_known_firewall.py::test_p[y]",
    "tests/test_config.py::test_d",
    "testcases/test_s2_failover.py::test_e[sync]",  # ALONE
    "testcases/test_s2_failover.py::test_e[symmetric]",
    "testcases/test_cli_lab.py::test_f",  # ALONE
]


def alone(nodeid: str) -> bool:
    return "failover" in nodeid or "cli_lab" in nodeid


class Worker:
    def __init__(self, name: str):
        self.name, self.queue, self.shutting_down = name, [], False
        self.gateway = types.SimpleNamespace(id=name)

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.queue.extend(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


@pytest.fixture
def sched(monkeypatch):
    monkeypatch.setattr(loadscope, "parse_tx_spec_config", lambda config: ["popen", "popen"])
    config = types.SimpleNamespace(option=types.SimpleNamespace(loadscopereorder=True))
    return scheduler(config, None)


def test_alone_modules_run_with_nothing_beside_them(sched):
    workers = [Worker("gw0"), Worker("gw1")]
    for w in workers:
        sched.add_node(w)
    for w in workers:
        sched.add_node_collection(w, COLLECTION)
    sched.schedule()
    ran: list[str] = []
    for _ in range(100):
        busy = [w for w in workers if w.queue]
        if not busy:
            break
        for w in busy:  # each worker finishes one test per step
            if any(alone(COLLECTION[i]) for o in workers for i in o.queue):
                assert len(busy) == 1, [COLLECTION[i] for o in busy for i in o.queue]
            index = w.queue.pop(0)
            ran.append(COLLECTION[index])
            sched.mark_test_complete(w, index)
    assert sorted(ran) == sorted(COLLECTION)
    assert all(w.shutting_down for w in workers)
    assert sched.tests_finished
    # the two alone modules ran last, each whole on one worker
    assert set(ran[-3:]) == {n for n in COLLECTION if alone(n)}
