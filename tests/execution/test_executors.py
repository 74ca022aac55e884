"""Executors by name, and the local pool honouring what each job's backend needs."""

from __future__ import annotations

import pytest
from factories import make_job, make_plan, write_wav
from pool_jobs import FakeJob

from emo_cli.errors import UsageError
from emo_cli.execution.devices import Device
from emo_cli.execution.executors import (
    InlineExecutor,
    LocalPoolExecutor,
    RayExecutor,
    executor_names,
    make_executor,
)
from emo_cli.execution.pool import DONE, run_pool

RECORD = "pool_jobs:record"


def test_executors_are_built_by_name_from_the_options_they_take():
    assert make_executor("inline", devices="cpu:2", retries=5) == InlineExecutor()
    assert make_executor("local", devices="cpu:2", retries=5, address="x") == LocalPoolExecutor("cpu:2", 5)
    assert make_executor("ray", devices="cpu:2", address="auto") == RayExecutor(address="auto")
    with pytest.raises(UsageError, match=r"--executor slurm: expected one of inline, local, ray"):
        make_executor("slurm")


def test_an_installed_executor_renders_by_name_like_the_built_in_ones(test_backends, tmp_path):
    """tests/plugins' dist-info installs `testinline` in the emo_cli.executors entry-point group."""
    from emo_cli.execution import render

    assert executor_names() == ["inline", "local", "ray", "testinline"]
    executor = make_executor("testinline", devices="cpu:2", retries=5)
    assert type(executor).__name__ == "TestInlineExecutor" and isinstance(executor, InlineExecutor)
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 0.3))
    events: list = []
    summary = render(make_plan(tmp_path / "out", [job]), executor="testinline", events=events.append)
    assert summary.exit_code == 0 and [r.status for r in summary.results] == ["done"]
    assert (events[0].kind, events[0]["executor"], events[0]["devices"]) == ("run_started", "testinline", "test-plugin")


def test_gpu_jobs_go_to_gpu_workers_and_cpu_jobs_to_cpu_workers(tmp_path):
    jobs = [FakeJob(id=f"{kind}{i}", work_dir=tmp_path / f"{kind}{i}", duration=i) for kind in ("gpu", "cpu")
            for i in range(3)]  # fmt: skip
    devices = [Device(kind="cuda", index=0, visible_id="0"), Device(kind="cpu", index=0)]
    summary = run_pool(jobs, RECORD, devices, needs={job.id: job.id[:3] for job in jobs})
    assert {o.job_id: (o.status, o.device) for o in summary.outcomes.values()} == {
        **{f"gpu{i}": (DONE, "cuda:0") for i in range(3)},
        **{f"cpu{i}": (DONE, "cpu:0") for i in range(3)},
    }


def test_without_the_device_a_job_needs_any_worker_takes_it(tmp_path):
    jobs = [FakeJob(id="gpu", work_dir=tmp_path / "gpu"), FakeJob(id="cpu", work_dir=tmp_path / "cpu")]
    summary = run_pool(jobs, RECORD, [Device(kind="cpu", index=0)], needs={"gpu": "gpu", "cpu": "cpu"})
    assert summary.ok  # a GPU backend still renders where there is no GPU (on the CPU, as before)


def test_auto_adds_a_cpu_worker_for_cpu_backends_beside_the_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    pool = LocalPoolExecutor("auto")
    assert [d.name for d in pool.pool_devices(["gpu", "gpu"])] == ["cuda:0", "cuda:1"]
    assert [d.name for d in pool.pool_devices(["gpu", "cpu"])] == ["cuda:0", "cuda:1", "cpu:0"]
    assert [d.name for d in LocalPoolExecutor("cuda:1").pool_devices(["cpu"])] == ["cuda:1"]


def test_a_workers_pool_event_reaches_the_sink_as_one_render_event_in_the_written_order(tmp_path):
    """What `--json` writes for a worker's event: the same keys in the same order as before there
    was a type for it (event, the job, the worker's own fields, worker, device)."""
    from emo_cli.execution.executors import PoolEvents
    from emo_cli.execution.results import RenderEvent, stamped
    from emo_cli.execution.scheduling import PoolEvent

    job = make_job(tmp_path / "out")
    received: list[RenderEvent] = []
    PoolEvents([job], received.append)(PoolEvent("failed", job.id, 1, "cpu:1", {"message": "boom", "seconds": 1 / 3},
                                                 time=0.0))  # fmt: skip
    (event,) = received
    assert (event.kind, event.job_id, event.job, event.device) == ("job_failed", job.id, job.name, "cpu:1")
    assert list(event) == ["event", "job_id", "job", "output", "seconds", "error", "worker", "device"]
    assert event == {"event": "job_failed", "job_id": job.id, "job": job.name, "output": str(job.output),
                     "seconds": 1 / 3, "error": "boom", "worker": 1, "device": "cpu:1"}  # fmt: skip
    written = stamped(event)
    assert list(written)[:3] == ["schema", "time", "event"] and written["seconds"] == 0.333
    assert RenderEvent.from_dict(event.to_dict()) == event
