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
    "testcases/test_links_rate.py::test_f",  # ALONE
]


def alone(nodeid: str) -> bool:
    return "outside" in nodeid or "test_links_rate" in nodeid


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


def run(sched, collection, kill=None) -> tuple[list[str], list[Worker]]:
    """Drive two workers through `collection` as xdist would. `kill(worker, nodeid)` says,
    as a worker is about to finish `nodeid`, whether it dies there (SIGKILL): then it is
    removed as xdist's DSession does (its pending work back in the queue) and a replacement
    joins (add_node, its collection, schedule). Returns the tests run and all workers."""
    workers = [Worker("gw0"), Worker("gw1")]
    for w in workers:
        sched.add_node(w)
    for w in workers:
        sched.add_node_collection(w, collection)
    sched.schedule()
    ran: list[str] = []
    for _ in range(300):
        for w in [w for w in workers if not w.gone]:
            if w.runnable():
                nodeid = collection[w.queue[0]]
                if kill is not None and kill(w, nodeid, sched):
                    kill = None
                    w.gone = True
                    sched.remove_node(w)
                    new = Worker(f"gw{len(workers)}")
                    workers.append(new)
                    sched.add_node(new)
                    sched.add_node_collection(new, collection)
                    sched.schedule()
                    continue
                index = w.queue.pop(0)
                if alone(nodeid):
                    assert [o.name for o in workers if not o.gone] == [w.name], f"{nodeid} beside others"
                ran.append(nodeid)
                sched.mark_test_complete(w, index)
            elif w.shutting_down and not w.queue:
                w.gone = True
                sched.remove_node(w)
        if all(w.gone for w in workers):
            break
    return ran, workers


@pytest.mark.parametrize(
    "collection", [COLLECTION, [n for n in COLLECTION if alone(n)]], ids=["mixed", "alone only"]
)
def test_alone_modules_run_with_no_other_worker_left(sched, collection):
    ran, workers = run(sched, collection)
    assert sorted(ran) == sorted(collection)
    assert all(w.gone for w in workers) and sched.tests_finished
    assert {n for n in ran[-3:]} == {n for n in collection if alone(n)}


KILLS = {
    # the worker running the alone modules dies in one (the hang seen in a clean-clone run
    # at 630643b: the replacement was never given them, nor shut down)
    "runner in an alone module": lambda w, nodeid, sched: alone(nodeid),
    # another worker dies while the runner waits for it to end
    "other while the runner waits": lambda w, nodeid, sched: (
        sched.runner is not None and w is not sched.runner and not alone(nodeid)
    ),
    "a worker before any alone module": lambda w, nodeid, sched: sched.runner is None,
}


@pytest.mark.parametrize("kill", list(KILLS.values()), ids=list(KILLS))
def test_a_killed_worker_leaves_no_hang(sched, kill):
    ran, workers = run(sched, COLLECTION, kill)
    assert len(workers) == 3, "the kill happened"
    assert set(ran) == set(COLLECTION), "every test ran (the killed one again on the replacement)"
    assert all(w.gone for w in workers) and sched.tests_finished


def test_the_modules_that_run_sessionlab_are_one_scope_beside_the_others():
    """TOGETHER: one scope (one worker, in order), not alone; the rest keep their scopes."""
    from testcases.scheduling import TOGETHER, is_alone, scope_of

    scopes = {scope_of(f"testcases/{m}.py::test_x") for m in TOGETHER}
    assert len(scopes) == 1 and not is_alone(scopes.pop())
    assert scope_of("testcases/test_s4_l7.py::test_a") == "testcases/test_s4_l7.py"
    assert is_alone(scope_of("testcases/test_outside.py::test_e"))
