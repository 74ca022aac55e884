"""The job functions that the device pool and the Ray executor call in their worker processes.

A worker process (a pool worker, a Ray actor) renders many jobs: each backend is instantiated
once per process (its weights load once) and reused for every job that asks for it. Render events travel back to the pool
process through `events.emit`, where they reach the same event sink as a serial render's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo_cli.backends.base import Backend
from emo_cli.backends.registry import get_backend_class
from emo_cli.errors import EmoError
from emo_cli.execution.devices import Device
from emo_cli.execution.jobs import render_job
from emo_cli.execution.results import JobFailed, JobResult, RenderEvent
from emo_cli.planning.job import Job

# Import paths of the job functions below, as `run_pool` and `run_on_ray` take them.
RESUME_JOB = "emo_cli.execution.worker:render_resuming"
FRESH_JOB = "emo_cli.execution.worker:render_afresh"

_backends: dict[tuple[str, str], Backend] = {}


@dataclass(frozen=True)
class SharedWork:
    """Jobs with the same content (one id, one work dir) and different outputs, handed to one
    worker as one unit: the chunks are rendered once, under one lease, and every job's output
    is published. Content addressing shares the work; it never drops an output."""

    jobs: tuple[Job, ...]

    @property
    def id(self) -> str:
        return self.jobs[0].id

    @property
    def duration(self) -> float:
        return self.jobs[0].duration

    @property
    def work_dir(self) -> Path:
        return self.jobs[0].work_dir


def shared_work(jobs: Sequence[Job]) -> list[Job | SharedWork]:
    """`jobs` with those sharing an id gathered into one `SharedWork` (at the first one's place)."""
    by_id: dict[str, list[Job]] = {}
    for job in jobs:
        by_id.setdefault(job.id, []).append(job)
    return [group[0] if len(group) == 1 else SharedWork(tuple(group)) for group in by_id.values()]


def backend_for(job: Job, device: str | None) -> Backend:
    """This process's instance of the job's backend on `device`, created on first use."""
    key = (job.settings.backend, device or "")
    if key not in _backends:
        try:
            _backends[key] = get_backend_class(job.settings.backend)(device=device)
        except EmoError as exc:
            raise JobFailed(job, f"{job.field}, settings.backend", exc) from exc
    return _backends[key]


def torch_device(device: Device) -> str:
    """The device name a backend sees: a GPU worker's one visible GPU is always cuda:0."""
    return "cuda:0" if device.kind == "cuda" else "cpu"


def render_resuming(job: Job | SharedWork, device: Device, events: Any) -> JobResult | tuple[JobResult, ...]:
    """Render `job` (or every job of a `SharedWork`), reusing its verified chunks (the default)."""
    return _render(job, device, events, resume=True)


def render_afresh(job: Job | SharedWork, device: Device, events: Any) -> JobResult | tuple[JobResult, ...]:
    """Render `job` from scratch (`emo render --no-resume`); a `SharedWork`'s chunks are
    dropped once, before its first job, and reused by the others."""
    return _render(job, device, events, resume=False)


def _render(work: Job | SharedWork, device: Device, events: Any, *, resume: bool) -> JobResult | tuple[JobResult, ...]:
    def forward(event: RenderEvent) -> None:
        data = {key: value for key, value in event.fields.items() if key != "job_id"}
        events.emit(event.kind, **data)

    if isinstance(work, Job):
        return render_job(work, backend_for(work, torch_device(device)), events=forward, resume=resume)
    backend = backend_for(work.jobs[0], torch_device(device))
    results: list[JobResult] = []
    for index, job in enumerate(work.jobs):
        try:
            results.append(render_job(job, backend, events=forward, resume=resume or index > 0))
        except JobFailed as exc:
            if index == 0:
                raise  # the shared chunks failed: every job of the work fails with it
            # One output failed to publish (its folder, its name): the others still count.
            forward(RenderEvent.of("job_failed", job=job.name, output=str(job.output), error=str(exc),
                     error_type=type(exc.cause).__name__))  # fmt: skip
            results.append(JobResult(job.id, job.name, job.output, "failed", job.num_frames, len(job.chunks()),
                                     0, 0.0, error=str(exc)))  # fmt: skip
    return tuple(results)
