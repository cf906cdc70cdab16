"""How the lab suites run side by side (pytest-xdist, `--dist loadscope`: `sessionlab run`'s
default on 2 CPUs, README command 2): which cases form one scope (run whole on one worker
with its lab), which go first, and which need the machine to themselves.

- SHARED_COLLECTION: a scenario whose closing case is in another module than the cases it
  collects from (S1's test_s1_summary): its modules are one scope, in order.
- BY_CASE: modules whose cases share nothing but the lab's topology, the longest in the
  suite: each case a scope of its own (each worker builds the module's lab for the cases
  it gets: about a second).
- TOGETHER: the harness's modules that run `sessionlab` themselves (the CLI, remote
  hosts, SIGKILL at any moment, the paused prompt): one scope, run in order on one worker
  beside the others' labs. Each reads only its own runs' labs (testcases/own_runs.py's
  label, kill_series' process tree), but one's `sessionlab clean` would remove what
  another's killed run left before that one looked: so one at a time. They ran alone
  until 2026-12-03 (about 260 s at the end of README command 2 with the other workers
  idle).
- ALONE: modules that need the machine to themselves (marked `alone`): they start only
  when no other worker has work, and nothing starts beside them. Their reasons beside each.
  S5's table exhaustion (four labs against 0.8 s timeouts) and S2's paced failover ran
  alone while another worker's lab teardown stalled every lab's forwarding for a third of
  a second (0.31 s, 149 ms seen); since bridges leave a port per transaction (8f8b18d,
  `bench stall`: 14-30 ms) they run beside others (2 runs of the default suite with 3
  workers: 310 of 310, smallest margin 0.735 s, both S5's).
- Order: the collection's (the longest scopes first, by testcases/durations.json, ALONE
  last: `order`), not xdist's by number of tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHARED_COLLECTION = ("s1",)
BY_CASE = ("test_s2_sync", "test_s6_known_firewall", "test_s6_external_device")
# The paused prompt's tests ran alone from 073fb26: a Ctrl-C typed there beside other labs
# was lost once (clean-clone run at dd82f6b), a SIGINT that came after readline drew the
# prompt and before it waited; lab.interactive.ReadlineWake sends such a signal again.
TOGETHER = ("test_cli_lab", "test_kill_anywhere", "test_remote", "test_pause_on_fail")
ALONE = (
    # the root namespace sampled throughout (other workers' labs would be in the samples),
    # and its last case reads every capture of the run once the other cases have ended
    "test_outside",
    # the firewall's table memory cross-checked against the kernel-wide nf_conntrack slab,
    # which another worker's labs would move (the case then does not assert it)
    "test_s5_timeouts_as_memory",
    # the impairment element spins out its delays on a core of its own: beside another
    # worker's labs 20 Mbit/s of TCP through it reached 16.1 (clean-clone run at e994524);
    # test_links' other cases (delay read from the smallest RTTs, loss from 5,000 pings)
    # run beside other labs, as the harness's two-lab tests have run them all along
    "test_links_rate",
)


def stem_of(nodeid_or_scope: str) -> str:
    return Path(nodeid_or_scope.split("::", 1)[0]).stem


def scope_of(nodeid: str) -> str:
    """The xdist scope of a test: a SHARED_COLLECTION scenario, the TOGETHER modules' one
    scope, the case itself in a BY_CASE module, else its module (xdist's own rule)."""
    from lab.catalog import suite_of

    stem = stem_of(nodeid)
    suite = suite_of(stem)
    if suite in SHARED_COLLECTION:
        return f"scenario {suite}"
    if stem in TOGETHER:
        return "harness: runs of sessionlab"
    if stem in BY_CASE:
        return nodeid
    return nodeid.rsplit("::", 1)[0] if "::" in nodeid else nodeid


def is_alone(scope: str) -> bool:
    return stem_of(scope) in ALONE


def order(items: list[Any]) -> list[Any]:
    """pytest items, the longest scopes first (lab/schedule.py), those needing the machine
    to themselves last; the same on every worker."""
    from lab.results import safe_name
    from lab.schedule import expected_seconds, longest_first, module_seconds, spread_modules

    def case_of(item: Any) -> str:
        return safe_name(f"{item.path.stem}.{item.name}")

    seconds = expected_seconds()
    seconds.update(spread_modules(items, lambda item: item.nodeid.split("::")[0], case_of, module_seconds()))
    ranked = longest_first(items, lambda item: scope_of(item.nodeid), case_of, seconds)
    return sorted(ranked, key=lambda item: is_alone(scope_of(item.nodeid)))  # stable


def scheduler(config: Any, log: Any) -> Any:
    """xdist's LoadScopeScheduling with these scopes, this order, and ALONE's rule."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep `order`'s order

    class ScenarioScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """A worker runs its last test only once it is sent more or told to shut down (it
        needs the next test for fixture teardown), so "no other worker has work" is known
        only when the others have ended: once only ALONE scopes are left, the first worker
        to ask runs them all, the others are shut down, and it starts them when it is the
        last worker left (`remove_node`). A worker that dies (SIGKILL) is replaced by xdist:
        a dead runner hands the role to the next worker to ask, and a worker that joins
        while another runs them is shut down, as the others were."""

        runner: Any = None

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            scope = next((s for s in self.workqueue if not is_alone(s)), None)
            if scope is None:  # only scopes that need the machine to themselves are left
                if self.runner is None:
                    self.runner = node
                    for other in self.nodes:
                        if other is not node and not other.shutting_down:
                            other.shutdown()
                if node is not self.runner:
                    if not node.shutting_down:
                        node.shutdown()  # a replacement that joined after the others left
                    return
                if len(self.nodes) > 1:
                    return
                scope = next(iter(self.workqueue))
            work_unit = self.workqueue.pop(scope)
            self.assigned_work.setdefault(node, {})[scope] = work_unit
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(n) for n, done in work_unit.items() if not done])

        def schedule(self) -> None:
            late = self.collection is not None  # a replacement for a worker that died
            super().schedule()
            if late:  # xdist gives it one scope, and it holds its last test back until more comes
                for node in self.nodes:
                    self._reschedule(node)

        def remove_node(self, node: Any) -> Any:
            if node is self.runner:  # died (or ended): the next worker to ask takes over
                self.runner = None
            crashed = super().remove_node(node)
            for scope in [s for s, unit in self.workqueue.items() if all(unit.values())]:
                del self.workqueue[scope]  # xdist puts a dead worker's finished scopes back too
            if self.runner is not None and node is not self.runner and self.runner in self.assigned_work:
                self._reschedule(self.runner)  # perhaps the last other worker: start
            return crashed

    return ScenarioScheduling(config, log)
