"""The job functions that the device pool and the Ray executor call in their worker processes.

A worker process (a pool worker, a Ray actor) renders many jobs: each backend is instantiated
once per process (its weights load once) and reused for every job that asks for it. Render events travel back to the pool
process through `events.emit`, where they reach the same event sink as a serial render's.
"""

from __future__ import annotations

from typing import Any

from emo_cli.backends.base import Backend
from emo_cli.backends.registry import get_backend_class
from emo_cli.errors import EmoError
from emo_cli.execution.devices import Device
from emo_cli.execution.jobs import render_job
from emo_cli.execution.results import JobFailed, JobResult
from emo_cli.planning.job import Job

# Import paths of the job functions below, as `run_pool` and `run_on_ray` take them.
RESUME_JOB = "emo_cli.execution.worker:render_resuming"
FRESH_JOB = "emo_cli.execution.worker:render_afresh"

_backends: dict[tuple[str, str], Backend] = {}


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


def render_resuming(job: Job, device: Device, events: Any) -> JobResult:
    """Render `job`, reusing its verified chunks (the default)."""
    return _render(job, device, events, resume=True)


def render_afresh(job: Job, device: Device, events: Any) -> JobResult:
    """Render `job` from scratch (`emo render --no-resume`)."""
    return _render(job, device, events, resume=False)


def _render(job: Job, device: Device, events: Any, *, resume: bool) -> JobResult:
    def forward(event: dict[str, Any]) -> None:
        data = {key: value for key, value in event.items() if key not in ("event", "job_id")}
        events.emit(event["event"], **data)

    return render_job(job, backend_for(job, torch_device(device)), events=forward, resume=resume)
