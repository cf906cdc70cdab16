"""testcases/scheduling.py's xdist scheduler, driven with stand-in workers that behave as
xdist's do (a worker runs its last test only once it is sent more or told to shut down;
a worker that has shut down and run everything is removed): every test runs once, a
module that needs the machine to itself runs with no other worker left, and all end."""

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
    "testcases/test_outside.py::test_e[sync]",  # ALONE
    "testcases/test_outside.py::test_e[symmetric]",
    "testcases/test_cli_lab.py::test_f",  # ALONE
]


def alone(nodeid: str) -> bool:
    return "outside" in nodeid or "cli_lab" in nodeid


class Worker:
    def __init__(self, name: str):
        self.name, self.queue, self.shutting_down, self.gone = name, [], False, False
        self.gateway = types.SimpleNamespace(id=name)

    def send_runtest_some(self, indexes: list[int]) -> None:
        assert not self.shutting_down
        self.queue.extend(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True

    def runnable(self) -> bool:
        """xdist's worker holds its last test back until more comes or it shuts down."""
        return len(self.queue) > 1 or (self.shutting_down and bool(self.queue))


@pytest.fixture
def sched(monkeypatch):
    monkeypatch.setattr(loadscope, "parse_tx_spec_config", lambda config: ["popen", "popen"])
    config = types.SimpleNamespace(option=types.SimpleNamespace(loadscopereorder=True))
    return scheduler(config, None)


@pytest.mark.parametrize(
    "collection", [COLLECTION, [n for n in COLLECTION if alone(n)]], ids=["mixed", "alone only"]
)
def test_alone_modules_run_with_no_other_worker_left(sched, collection):
    workers = [Worker("gw0"), Worker("gw1")]
    for w in workers:
        sched.add_node(w)
    for w in workers:
        sched.add_node_collection(w, collection)
    sched.schedule()
    ran: list[str] = []
    for _ in range(200):
        for w in [w for w in workers if not w.gone]:
            if w.runnable():
                index = w.queue.pop(0)
                nodeid = collection[index]
                if alone(nodeid):
                    assert [o.name for o in workers if not o.gone] == [w.name], f"{nodeid} beside others"
                ran.append(nodeid)
                sched.mark_test_complete(w, index)
            elif w.shutting_down and not w.queue:
                w.gone = True
                sched.remove_node(w)
        if all(w.gone for w in workers):
            break
    assert sorted(ran) == sorted(collection)
    assert all(w.gone for w in workers) and sched.tests_finished
    assert {n for n in ran[-3:]} == {n for n in collection if alone(n)}
