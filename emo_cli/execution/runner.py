"""Many jobs: here, on a pool of local devices, or on Ray; keep going past failures.

The three ways share the render loop (`render_job`), the leases and the events, so they can
work on one output dir at once, and any of them resumes what another left unfinished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emo_cli.backends.base import Backend
from emo_cli.backends.registry import get_backend_class
from emo_cli.errors import EmoError, UsageError
from emo_cli.execution.devices import parse_devices
from emo_cli.execution.jobs import render_job
from emo_cli.execution.lease import JobLease, read_lease
from emo_cli.execution.pool import PoolEvent
from emo_cli.execution.results import EventSink, JobFailed, JobResult, JobStatus, RunSummary
from emo_cli.execution.shards import select_shard
from emo_cli.planning.job import Job, Plan

EXECUTORS = ("local", "ray")
# Without --address, Ray starts a one-machine cluster: keep it on the loopback, no dashboard.
LOCAL_RAY = {"_node_ip_address": "127.0.0.1", "include_dashboard": False, "log_to_driver": False}


def select_jobs(plan: Plan, only: Sequence[str] | None) -> list[Job]:
    """The plan's jobs, or those named in `only` (by name or id prefix), in plan order."""
    if not only:
        return list(plan.jobs)
    unknown = [
        name for name in only if not any(job.name == name or job.id.startswith(name) for job in plan.jobs)
    ]
    if unknown:
        known = ", ".join(job.name for job in plan.jobs) or "none"
        raise UsageError(f"--only {', '.join(unknown)}: no such job in {plan.manifest} (jobs: {known})")
    return [job for job in plan.jobs if any(job.name == name or job.id.startswith(name) for name in only)]


def render(
    plan: Plan,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    device: str | None = None,
    devices: str | None = None,
    retries: int = 2,
    shard: str | None = None,
    executor: str = "local",
    address: str | None = None,
) -> RunSummary:
    """Render every job of `plan` (or those in `only`, or shard `shard` of them).

    Where the jobs run:
    - `devices` None and `executor` "local": here, one after another, on `device` (library
      use: tests, notebooks). Each job's lease is claimed first; a job another process holds
      is reported as `held`, not waited for.
    - `devices` ("auto", "cuda:0,1", "cpu:2", see `parse_devices`): a pool of worker processes,
      one per device, jobs longest-first; a dead worker is restarted and its job retried up to
      `retries` times; jobs held by another process are waited for.
    - `executor` "ray": one Ray task per job on the cluster at `address` (or a local one).

    Each backend is instantiated once per process and reused. A job that fails with an
    `EmoError` is recorded as failed and the others still run. Ctrl-C (or SIGTERM in a pool)
    raises KeyboardInterrupt once the workers have stopped; finished chunks stay on disk.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
    emit = events or (lambda event: None)
    began = time.monotonic()
    jobs = select_jobs(plan, only)
    if shard is not None:
        jobs = select_shard(jobs, shard)
    where = "ray" if executor == "ray" else (devices or "in-process")
    emit({
        "event": "run_started", "manifest": str(plan.manifest), "output_dir": str(plan.output_dir),
        "jobs": len(jobs), "frames": sum(job.num_frames for job in jobs), "resume": resume,
        "shard": shard, "executor": executor, "devices": where,
    })  # fmt: skip
    if executor == "ray":
        results = _render_on_ray(jobs, resume=resume, emit=emit, retries=retries, address=address)
    elif devices is not None:
        results = _render_in_pool(jobs, resume=resume, emit=emit, retries=retries, devices=devices)
    else:
        results = _render_here(jobs, resume=resume, emit=emit, device=device)
    summary = RunSummary(tuple(results), time.monotonic() - began)
    emit({"event": "run_done", **summary.to_dict()})
    return summary


def _render_here(
    jobs: Sequence[Job], *, resume: bool, emit: EventSink, device: str | None
) -> list[JobResult]:
    backends: dict[str, Backend | BackendUnavailable] = {}
    results: list[JobResult] = []
    for job in jobs:
        name = job.settings.backend
        if name not in backends:
            try:
                backends[name] = get_backend_class(name)(device=device)
            except EmoError as exc:
                backends[name] = BackendUnavailable(exc)
        backend = backends[name]
        job_began = time.monotonic()
        lease = JobLease.acquire(job.work_dir)
        if lease is None:
            info = read_lease(job.work_dir)
            holder = info.holder if info is not None else "another process"
            emit({"event": "job_held", "job_id": job.id, "job": job.name, "holder": holder})
            results.append(_result(job, "held", error=f"job {job.name} is being rendered by {holder}"))
            continue
        try:
            if isinstance(backend, BackendUnavailable):
                raise JobFailed(job, f"{job.field}, settings.backend", backend.error)
            result = render_job(job, backend, events=emit, resume=resume)
        except JobFailed as exc:
            result = _result(job, "failed", seconds=time.monotonic() - job_began, error=str(exc))
            emit({"event": "job_failed", "job_id": job.id, "job": job.name, "output": str(job.output),
                  "error": str(exc), "error_type": type(exc.cause).__name__})  # fmt: skip
        finally:
            lease.release()
        results.append(result)
    return results


def _render_in_pool(
    jobs: Sequence[Job], *, resume: bool, emit: EventSink, retries: int, devices: str
) -> list[JobResult]:
    from emo_cli.execution.pool import run_pool

    summary = run_pool(
        jobs, _job_function(resume), parse_devices(devices), retries=retries, on_event=_PoolEvents(jobs, emit)
    )
    if summary.interrupted:
        raise KeyboardInterrupt
    return [_from_outcome(job, summary.outcomes[job.id]) for job in jobs]


def _render_on_ray(
    jobs: Sequence[Job], *, resume: bool, emit: EventSink, retries: int, address: str | None
) -> list[JobResult]:
    from emo_cli.execution.ray_executor import run_on_ray

    # A GPU backend's job asks Ray for one GPU; a CPU backend's job for one CPU and no GPU.
    by_resource: dict[str, list[Job]] = {}
    for job in jobs:
        try:
            resource = get_backend_class(job.settings.backend).resources
        except EmoError:
            resource = "cpu"  # its task fails at once with the backend's own message
        by_resource.setdefault(resource, []).append(job)
    outcomes: dict[str, Any] = {}
    for resource, group in by_resource.items():
        summary = run_on_ray(
            group,
            _job_function(resume),
            address=address,
            num_gpus=1.0 if resource == "gpu" else 0.0,
            retries=retries,
            on_event=_PoolEvents(group, emit),
            init_kwargs=LOCAL_RAY if address is None else None,
        )
        if summary.interrupted:
            raise KeyboardInterrupt
        outcomes.update(summary.outcomes)
    return [_from_outcome(job, outcomes[job.id]) for job in jobs]


def _job_function(resume: bool) -> str:
    from emo_cli.execution.worker import FRESH_JOB, RESUME_JOB

    return RESUME_JOB if resume else FRESH_JOB


class _PoolEvents:
    """Turns the pool's (or Ray's) events into render events, tagged with worker and device.

    The render loop's own events (job_started, chunk_done, job_done, job_skipped) come through
    as they are; the pool's bookkeeping becomes job_failed, job_assigned, job_retrying,
    job_held, job_interrupted, worker_ready and worker_died.
    """

    RENAMED = {"failed": "job_failed", "started": "job_assigned", "retrying": "job_retrying",
               "held": "job_held", "interrupted": "job_interrupted"}  # fmt: skip
    DROPPED = {"done"}  # the render loop already said job_done or job_skipped

    def __init__(self, jobs: Sequence[Job], emit: EventSink) -> None:
        self.jobs = {job.id: job for job in jobs}
        self.emit = emit

    def __call__(self, event: PoolEvent) -> None:
        if event.kind in self.DROPPED:
            return
        out: dict[str, Any] = {"event": self.RENAMED.get(event.kind, event.kind)}
        job = self.jobs.get(event.job_id) if event.job_id else None
        if job is not None:
            out.update(job_id=job.id, job=job.name, output=str(job.output))
        data = dict(event.data)
        if event.kind == "failed":
            data["error"] = data.pop("message", "")
        out.update(data)
        out.update(worker=event.worker, device=event.device)
        self.emit(out)


def _from_outcome(job: Job, outcome: Any) -> JobResult:
    from emo_cli.execution.pool import DONE, FAILED, HELD

    if outcome.status == DONE and isinstance(outcome.value, JobResult):
        return dataclasses.replace(outcome.value, device=outcome.device)
    if outcome.status == DONE:  # the result did not come back (it would not pickle)
        return _result(job, "done", seconds=outcome.seconds, device=outcome.device)
    if outcome.status == HELD:
        return _result(job, "held", error=f"job {job.name} is {outcome.message}", device=outcome.device)
    error = outcome.message if outcome.status == FAILED else f"job {job.name}: {outcome.message}"
    if outcome.traceback:
        error += "\n" + outcome.traceback
    return _result(job, "failed", seconds=outcome.seconds, error=error, device=outcome.device)


def _result(job: Job, status: JobStatus, *, seconds: float = 0.0, error: str | None = None,
            device: str | None = None) -> JobResult:  # fmt: skip
    return JobResult(job.id, job.name, job.output, status, job.num_frames, len(job.chunks()), 0, seconds,
                     error=error, device=device)  # fmt: skip


def render_manifest(
    manifest: Path | str,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    device: str | None = None,
    devices: str | None = None,
    retries: int = 2,
    shard: str | None = None,
    executor: str = "local",
    address: str | None = None,
) -> RunSummary:
    """Load and plan `manifest` (raising ManifestError with every problem), then `render` it."""
    from emo_cli.planning.plan import plan_manifest

    plan = plan_manifest(Path(manifest))
    return render(plan, resume=resume, events=events, only=only, device=device, devices=devices,
                  retries=retries, shard=shard, executor=executor, address=address)  # fmt: skip


class BackendUnavailable:
    """A backend that could not be loaded: every job that asks for it fails with this error."""

    def __init__(self, error: EmoError) -> None:
        self.error = error
