"""Jobs as Ray tasks on a local Ray with two (fake) GPUs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from pool_jobs import FakeJob, output_of

from emo_cli.execution.lease import JobLease, read_lease
from emo_cli.execution.pool import DONE, FAILED, HELD, PoolEvent

ray = pytest.importorskip("ray")

RECORD = "pool_jobs:record"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def local_ray(tmp_path, monkeypatch):
    """A local Ray with 2 CPUs and 2 GPUs whose state and sockets stay in a temp dir."""
    # Ray's socket paths must stay short: a temp dir right under /tmp, not under tmp_path.
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # A throwaway cluster bound to 127.0.0.1: no auth token, so none is written to the home dir.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray's workers import the job function by name, as a cluster's nodes import emo_cli.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    try:
        ray.init(
            num_cpus=2,
            num_gpus=2,
            _temp_dir=ray_dir,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_jobs_run_as_ray_tasks_one_gpu_each(local_ray, tmp_path):
    from emo_cli.execution.ray_executor import run_on_ray

    jobs = [
        FakeJob(id=f"job{i}", work_dir=tmp_path / f"job{i}", duration=10 - i, log=tmp_path / "log.txt")
        for i in range(5)
    ]
    # The two longest jobs go first and must run at the same time, each on its own GPU.
    for i in range(2):
        jobs[i] = FakeJob(
            id=f"job{i}",
            work_dir=tmp_path / f"job{i}",
            duration=10 - i,
            log=tmp_path / "log.txt",
            behaviour="rendezvous",
            rendezvous=tmp_path / "meet",
        )
    jobs.append(FakeJob(id="bad", work_dir=tmp_path / "bad", duration=0, behaviour="input_error"))
    held_job = FakeJob(id="held", work_dir=tmp_path / "held", duration=0)
    other = JobLease.acquire(held_job.work_dir, host="render-7", pid=4242, heartbeat_s=0)
    jobs.append(held_job)
    events: list[PoolEvent] = []
    try:
        summary = run_on_ray(
            jobs,
            RECORD,
            num_gpus=1,
            num_cpus=0.5,
            on_event=events.append,
            wait_for_held=False,
            held_retry_s=0.01,
        )
    finally:
        other.release()

    status = {o.job_id: o.status for o in summary.outcomes.values()}
    assert status == {**{f"job{i}": DONE for i in range(5)}, "bad": FAILED, "held": HELD}
    assert summary.outcomes["bad"].message == "portraits.bad: no face found in the portrait"
    assert summary.outcomes["held"].message == "held by render-7:4242"
    assert not output_of(held_job).exists()
    first_two = [summary.outcomes[f"job{i}"].value for i in range(2)]
    assert sorted(v["cuda"] for v in first_two) == ["0", "1"]  # at once, on different GPUs
    for i in range(5):
        value = summary.outcomes[f"job{i}"].value
        assert value["cuda"] in ("0", "1") and value["device"] == f"cuda:{value['cuda']}"
        assert read_lease(jobs[i].work_dir) is None
    logged = [line.split()[0] for line in (tmp_path / "log.txt").read_text().splitlines()]
    assert sorted(logged) == [f"job{i}" for i in range(5)]
    kinds = {(e.kind, e.job_id) for e in events}
    assert {("started", "job0"), ("progress", "job0"), ("done", "job0"), ("held", "held")} <= kinds
