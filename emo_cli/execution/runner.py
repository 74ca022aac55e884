"""Many jobs: load each backend once, render the plan's jobs in order, keep going past failures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from emo_cli.backends.base import Backend
from emo_cli.backends.registry import get_backend_class
from emo_cli.errors import EmoError, UsageError
from emo_cli.execution.jobs import render_job
from emo_cli.execution.results import EventSink, JobFailed, JobResult, RunSummary
from emo_cli.planning.job import Job, Plan


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
) -> RunSummary:
    """Render every job of `plan` (or those in `only`) and report how each went.

    Each backend is instantiated once (weights load once) and reused for all its jobs. A job
    that fails with an `EmoError` is recorded as failed and the others still run; any other
    exception is a bug and propagates (finished chunks stay on disk for the next run).
    """
    emit = events or (lambda event: None)
    began = time.monotonic()
    jobs = select_jobs(plan, only)
    emit({
        "event": "run_started", "manifest": str(plan.manifest), "output_dir": str(plan.output_dir),
        "jobs": len(jobs), "frames": sum(job.num_frames for job in jobs), "resume": resume,
    })  # fmt: skip
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
        try:
            if isinstance(backend, BackendUnavailable):
                raise JobFailed(job, f"{job.field}, settings.backend", backend.error)
            result = render_job(job, backend, events=emit, resume=resume)
        except JobFailed as exc:
            result = JobResult(
                job.id, job.name, job.output, "failed", job.num_frames, len(job.chunks()), 0,
                time.monotonic() - job_began, error=str(exc),
            )  # fmt: skip
            emit({"event": "job_failed", "job_id": job.id, "job": job.name, "output": str(job.output),
                  "error": str(exc), "error_type": type(exc.cause).__name__})  # fmt: skip
        results.append(result)
    summary = RunSummary(tuple(results), time.monotonic() - began)
    emit({"event": "run_done", **summary.to_dict()})
    return summary


def render_manifest(
    manifest: Path | str,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    device: str | None = None,
) -> RunSummary:
    """Load and plan `manifest` (raising ManifestError with every problem), then `render` it."""
    from emo_cli.manifest import load_manifest
    from emo_cli.planning import make_plan

    plan = make_plan(load_manifest(Path(manifest)))
    return render(plan, resume=resume, events=events, only=only, device=device)


class BackendUnavailable:
    """A backend that could not be loaded: every job that asks for it fails with this error."""

    def __init__(self, error: EmoError) -> None:
        self.error = error
