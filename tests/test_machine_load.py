"""The doctor's punctuality check (lab/machine_load.py): CPU shares from /proc/stat,
timer lateness, and what counts as beyond the suites' margins."""

import os

from lab.machine_load import (
    LATE_MAX_LIMIT,
    LATE_P99_LIMIT,
    CpuTimes,
    Punctuality,
    lateness,
    measure,
    shares,
)

STAT = "cpu  {user} 0 {system} {idle} {iowait} 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def _times(user, system, idle, iowait=0, steal=0):
    return CpuTimes.parse(STAT.format(user=user, system=system, idle=idle, iowait=iowait, steal=steal))


def test_shares_of_steal_and_busy_between_two_readings():
    before = _times(100, 100, 1000)
    after = _times(100 + 50, 100 + 10, 1000 + 120, iowait=10, steal=10)  # 200 jiffies in all
    steal, busy = shares(before, after)
    assert steal == 0.05
    assert busy == 0.3  # 60 of 200 busy; iowait counts as idle


def test_lateness_median_p99_and_max():
    late = [0.001] * 98 + [0.05, 0.2]
    assert lateness(late) == (0.001, 0.05, 0.2)


def test_problems_name_each_number_and_its_limit():
    fine = Punctuality(100, 0.0001, 0.002, 0.01, 0.0, 0.1)
    assert fine.problems() == []
    bad = Punctuality(100, 0.01, LATE_P99_LIMIT + 0.05, LATE_MAX_LIMIT + 0.05, 0.2, 0.9)
    found = bad.problems()
    assert len(found) == 4
    assert found[0].startswith("timers late 150 ms at p99 (limit 100)")
    assert "CPU steal 20 % (limit 5 %)" in found
    assert "CPUs 90 % busy already (limit 50 %)" in found


def test_a_real_measurement_of_this_machine():
    reading = measure(0.2)
    assert reading.sleeps >= 5
    assert 0 <= reading.late_median <= reading.late_p99 <= reading.late_max
    assert 0 <= reading.steal <= 1 and 0 <= reading.busy <= 1
    assert "timers late" in reading.summary() and os.cpu_count()


def test_the_doctor_shows_it_as_one_optional_check():
    from lab.doctor import punctuality_check

    check = punctuality_check(0.1)
    assert check.name == "punctuality" and "timers late" in check.detail
    assert check.ok or (check.optional and check.status == "late" and check.fix)
