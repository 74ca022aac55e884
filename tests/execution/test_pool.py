"""The local device pool, with real spawned worker processes and a tiny job function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pool_jobs import FakeJob, output_of

from emo_cli.errors import RenderError, UsageError
from emo_cli.execution.devices import parse_devices
from emo_cli.execution.lease import JobLease, read_lease
from emo_cli.execution.pool import DONE, FAILED, HELD, INTERRUPTED, PoolEvent, run_pool

RECORD = "pool_jobs:record"
HERE = Path(__file__).resolve().parent


def make_jobs(tmp_path: Path, count: int, **kw) -> list[FakeJob]:
    return [
        FakeJob(id=f"job{i}", work_dir=tmp_path / "out" / f"job{i}", log=tmp_path / "log.txt", **kw)
        for i in range(count)
    ]


def log_lines(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "log.txt").read_text().splitlines()]


def test_each_worker_sees_only_its_own_gpu(tmp_path):
    jobs = make_jobs(tmp_path, 4, behaviour="rendezvous", rendezvous=tmp_path / "meet")
    events: list[PoolEvent] = []
    summary = run_pool(jobs, RECORD, parse_devices("cuda:0,1", gpus=["0", "1"]), on_event=events.append)
    assert summary.ok and not summary.interrupted
    seen = {}
    for outcome in summary.outcomes.values():
        value = outcome.value
        # set before the worker imported anything, and only its own GPU
        assert value["cuda"] == value["cuda_at_import"] == outcome.device.removeprefix("cuda:")
        seen.setdefault(value["pid"], set()).add(value["cuda"])
    assert sorted(seen.values(), key=sorted) == [{"0"}, {"1"}]  # two long-lived workers
    progress = [e for e in events if e.kind == "progress"]
    assert {(e.data["done"], e.data["total"]) for e in progress} == {(1, 2), (2, 2)}
    assert all(e.worker in (0, 1) and e.device in ("cuda:0", "cuda:1") for e in progress)
    assert not any(read_lease(job.work_dir) for job in jobs)


def test_one_worker_renders_many_jobs_longest_first(tmp_path):
    durations = {"job0": 2.0, "job1": 7.5, "job2": 2.0, "job3": 11.0, "job4": 0.1}
    jobs = [
        FakeJob(id=i, work_dir=tmp_path / i, duration=d, log=tmp_path / "log.txt")
        for i, d in durations.items()
    ]
    summary = run_pool(jobs, RECORD, parse_devices("cpu"))
    assert summary.ok
    lines = log_lines(tmp_path)
    assert [line[0] for line in lines] == ["job3", "job1", "job0", "job2", "job4"]
    assert len({line[1] for line in lines}) == 1  # one process did them all
    assert all(o.attempts == 1 and o.device == "cpu:0" for o in summary.outcomes.values())


def test_a_job_that_raises_fails_alone(tmp_path):
    jobs = [
        FakeJob(id="a", work_dir=tmp_path / "a", duration=3, log=tmp_path / "log.txt"),
        FakeJob(id="b", work_dir=tmp_path / "b", duration=2, behaviour="input_error"),
        FakeJob(id="c", work_dir=tmp_path / "c", duration=1, behaviour="bug"),
        FakeJob(id="d", work_dir=tmp_path / "d", duration=0, log=tmp_path / "log.txt"),
    ]
    summary = run_pool(jobs, RECORD, parse_devices("cpu"))
    out = summary.outcomes
    assert (out["a"].status, out["d"].status) == (DONE, DONE)
    assert out["b"].status == FAILED
    assert out["b"].message == "portraits.b: no face found in the portrait"
    assert out["b"].traceback is None
    assert out["c"].status == FAILED and out["c"].message == "ValueError: a bug in the job function"
    assert "Traceback" in out["c"].traceback
    assert out["a"].value["pid"] == out["d"].value["pid"]  # the worker carried on
    assert not summary.ok


@pytest.mark.parametrize(("behaviour", "cause"), [("die_once", "killed by SIGKILL"), ("sigterm_once", "killed by SIGTERM")])
def test_a_worker_killed_mid_job_is_restarted_and_the_job_retried(tmp_path, behaviour, cause):
    """SIGTERM from outside the pool: the worker stops the job (KeyboardInterrupt, which the render
    loop uses to keep the chunk being encoded), then dies of the signal like any killed worker."""
    jobs = [
        FakeJob(
            id="dies", work_dir=tmp_path / "dies", duration=5, log=tmp_path / "log.txt", behaviour=behaviour
        ),
        FakeJob(id="fine", work_dir=tmp_path / "fine", duration=1, log=tmp_path / "log.txt"),
    ]
    events: list[PoolEvent] = []
    summary = run_pool(jobs, RECORD, parse_devices("cpu"), retries=1, on_event=events.append)
    assert summary.ok
    assert summary.outcomes["dies"].attempts == 2
    assert output_of(jobs[0]).exists()
    died = [e for e in events if e.kind == "worker_died"]
    assert [(e.job_id, e.data["cause"]) for e in died] == [("dies", cause)]
    assert [e.job_id for e in events if e.kind == "retrying"] == ["dies"]


def test_a_job_whose_worker_keeps_dying_fails_after_its_retries(tmp_path):
    (tmp_path / "dies").mkdir()
    job = FakeJob(id="dies", work_dir=tmp_path / "dies", behaviour="die_once")
    summary = run_pool([job], RECORD, parse_devices("cpu"), retries=0)
    outcome = summary.outcomes["dies"]
    assert outcome.status == FAILED and outcome.attempts == 1
    assert outcome.message == "the worker process died (killed by SIGKILL); gave up after 1 attempt"
    assert read_lease(job.work_dir) is None


@pytest.mark.parametrize("behaviour", ["interrupt", "terminate"])
def test_ctrl_c_stops_the_workers_and_marks_unfinished_jobs_interrupted(tmp_path, behaviour):
    jobs = make_jobs(tmp_path, 3)
    jobs[0] = FakeJob(id="job0", work_dir=tmp_path / "out" / "job0", duration=9, behaviour=behaviour)
    summary = run_pool(jobs, RECORD, parse_devices("cpu"))
    assert summary.interrupted
    assert {o.job_id: o.status for o in summary.outcomes.values()} == {
        "job0": INTERRUPTED,
        "job1": INTERRUPTED,
        "job2": INTERRUPTED,
    }
    assert summary.outcomes["job0"].attempts == 1 and summary.outcomes["job1"].attempts == 0
    assert not any(read_lease(job.work_dir) for job in jobs)  # leases given back


def test_a_job_held_by_a_live_process_is_not_rendered(tmp_path):
    jobs = make_jobs(tmp_path, 2)
    other = JobLease.acquire(jobs[0].work_dir, host="render-7", pid=4242, heartbeat_s=0)
    assert other is not None
    events: list[PoolEvent] = []
    try:
        summary = run_pool(
            jobs, RECORD, parse_devices("cpu"), wait_for_held=False, held_retry_s=0.01, on_event=events.append
        )
    finally:
        other.release()
    assert summary.outcomes["job0"].status == HELD
    assert summary.outcomes["job0"].message == "held by render-7:4242"
    assert summary.outcomes["job1"].status == DONE
    assert not output_of(jobs[0]).exists()
    assert any(e.kind == HELD and e.data["holder"] == "render-7:4242" for e in events)


def test_two_pools_on_one_output_dir_render_every_job_exactly_once(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pool_jobs", str(shared), "12", "cpu:2", name],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("pool-a", "pool-b")
    ]
    reports = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    ids = [f"job{i:02d}" for i in range(12)]
    logged = Counter(line.split()[0] for line in (shared / "log.txt").read_text().splitlines())
    assert logged == Counter(ids)  # each job rendered once, by one of the two pools
    assert sorted(reports[0]["ran"] + reports[1]["ran"]) == ids
    assert reports[0]["ran"] and reports[1]["ran"]  # both pools rendered, side by side
    for report in reports:
        assert set(report["statuses"].values()) == {DONE}
    assert not any(read_lease(shared / i) for i in ids)


def test_usage_errors_and_a_job_function_that_cannot_be_imported(tmp_path):
    jobs = make_jobs(tmp_path, 1)
    with pytest.raises(UsageError, match="expected an import path"):
        run_pool(jobs, "pool_jobs.record", parse_devices("cpu"))
    with pytest.raises(UsageError, match="--retries -1"):
        run_pool(jobs, RECORD, parse_devices("cpu"), retries=-1)
    with pytest.raises(
        RenderError, match=r"the worker for cpu:0 could not start: cannot import pool_jobs:nope"
    ):
        run_pool(jobs, "pool_jobs:nope", parse_devices("cpu"))
