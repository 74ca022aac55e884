"""Job leases: one holder at a time, stale leases taken over by exactly one claimant."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading

from emo_cli.execution.lease import (
    JobLease,
    LeaseInfo,
    claim_next,
    current_generation,
    is_stale,
    lease_file,
    read_current,
    read_lease,
)


def fixed(now: float):
    return lambda: now


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_keeps_the_job_and_release_frees_it(tmp_path):
    work = tmp_path / "job"
    lease = JobLease.acquire(work, host="node-a", heartbeat_s=0)
    assert lease is not None and lease.generation == 1
    info = read_lease(work)
    assert info is not None and info.host == "node-a" and info.token == lease.info.token
    assert JobLease.acquire(work, host="node-a", heartbeat_s=0) is None  # this pid is alive
    lease.release()
    assert read_lease(work) is None
    again = JobLease.acquire(work, host="node-a", heartbeat_s=0)
    assert again is not None and again.took_over is None and again.generation == 2
    again.release()
    assert sorted(p.name for p in work.iterdir()) == ["lease.00000002.json"]  # older numbers cleaned up


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    gone = dead_pid()
    old = JobLease.acquire(tmp_path, host="node-a", pid=gone, heartbeat_s=0, clock=fixed(1000.0))
    assert old is not None
    # The heartbeat is fresh: only the dead pid makes it stale.
    new = JobLease.acquire(tmp_path, host="node-a", heartbeat_s=0, clock=fixed(1001.0))
    assert new is not None
    assert new.took_over is not None and new.took_over.pid == gone
    assert read_lease(tmp_path).token == new.info.token
    new.release()


def test_another_hosts_lease_goes_stale_when_its_heartbeat_is_older_than_the_timeout(tmp_path):
    old = JobLease.acquire(
        tmp_path, host="node-a", pid=4242, timeout_s=60, heartbeat_s=0, clock=fixed(1000.0)
    )
    assert old is not None
    assert JobLease.acquire(tmp_path, host="node-b", timeout_s=60, heartbeat_s=0, clock=fixed(1059.0)) is None
    assert old.refresh(now=1050.0)
    assert read_lease(tmp_path).heartbeat == 1050.0
    assert JobLease.acquire(tmp_path, host="node-b", timeout_s=60, heartbeat_s=0, clock=fixed(1109.0)) is None
    new = JobLease.acquire(tmp_path, host="node-b", timeout_s=60, heartbeat_s=0, clock=fixed(1111.0))
    assert new is not None and new.took_over.holder == "node-a:4242"
    # The old holder finds out at its next heartbeat, and its release leaves the new lease alone.
    assert not old.refresh(now=1112.0)
    assert old.lost
    old.release()
    assert read_lease(tmp_path).holder == new.info.holder
    new.release()


def test_of_many_processes_racing_for_a_stale_lease_exactly_one_wins(tmp_path):
    for round_ in range(10):
        work = tmp_path / f"job{round_}"
        assert JobLease.acquire(work, host="gone", pid=1, heartbeat_s=0, clock=fixed(0.0)) is not None
        barrier = threading.Barrier(8)
        winners: list[JobLease] = []

        def claim(n: int, work=work, barrier=barrier, winners=winners) -> None:
            barrier.wait()
            lease = JobLease.acquire(work, host=f"node-{n}", pid=100 + n, heartbeat_s=0, clock=fixed(500.0))
            if lease is not None:
                winners.append(lease)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert read_lease(work).token == winners[0].info.token
        assert [p.name for p in work.iterdir()] == ["lease.00000002.json"]  # no temporaries left


def test_a_claimant_that_judged_an_older_lease_stale_cannot_displace_a_newer_one(tmp_path):
    JobLease.acquire(tmp_path, host="gone", pid=1, heartbeat_s=0, clock=fixed(0.0))
    seen_generation, seen = read_current(tmp_path)
    assert is_stale(seen, host="node-a", now=500.0, timeout_s=60)
    # B takes the stale lease over between A's look and A's claim.
    b = JobLease.acquire(tmp_path, host="node-b", pid=2, heartbeat_s=0, clock=fixed(500.0))
    assert b is not None
    a_claim = LeaseInfo(host="node-a", pid=3, token="a-token", started=500.0, heartbeat=500.0)
    assert claim_next(tmp_path, seen_generation, a_claim) is False
    assert read_lease(tmp_path).token == b.info.token
    # A claimant slower still, which saw no lease at all, re-creates number 1 (cleaned up by B's
    # claim) but loses to the higher number.
    assert claim_next(tmp_path, 0, dataclasses.replace(a_claim, token="c-token")) is False
    assert read_lease(tmp_path).token == b.info.token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lease.00000002.json"]
    assert b.refresh(now=501.0) and not b.lost
    b.release()


def test_the_heartbeat_thread_refreshes_the_lease(tmp_path):
    calls: list[float] = []
    beaten = threading.Event()

    def clock() -> float:
        calls.append(1000.0 + len(calls))
        if len(calls) >= 3:
            beaten.set()
        return calls[-1]

    lease = JobLease.acquire(tmp_path, host="node-a", heartbeat_s=0.01, clock=clock)
    assert lease is not None
    assert beaten.wait(10)
    lease.release()
    assert read_lease(tmp_path) is None
    assert calls[0] == 1000.0 and len(calls) >= 3


def test_an_unreadable_lease_counts_as_held_until_it_is_old(tmp_path):
    lease_file(tmp_path, 7).write_text("{not json")
    mtime = lease_file(tmp_path, 7).stat().st_mtime
    assert (
        JobLease.acquire(tmp_path, host="node-a", heartbeat_s=0, clock=fixed(mtime + 1), timeout_s=60) is None
    )
    lease = JobLease.acquire(tmp_path, host="node-a", heartbeat_s=0, clock=fixed(mtime + 61), timeout_s=60)
    assert lease is not None and lease.generation == 8
    lease.release()
    assert current_generation(tmp_path) == 8


def test_a_dead_pid_in_another_pid_namespace_is_judged_by_its_heartbeat_alone(tmp_path):
    old = JobLease.acquire(tmp_path, host="node-a", pid=dead_pid(), heartbeat_s=0, clock=fixed(1000.0))
    info = dataclasses.replace(old.info, pid_namespace="pid:[1]")  # a container sharing the host name
    assert not is_stale(info, host="node-a", now=1030.0, timeout_s=60)
    assert is_stale(info, host="node-a", now=1061.0, timeout_s=60)
    assert is_stale(old.info, host="node-a", now=1030.0, timeout_s=60)
    old.release()
