"""Many jobs: select them (by name, id prefix or shard), hand them to an executor, summarise.

The executors (`executors`: inline, local pool, Ray) share the render loop (`render_job`), the
leases and the events, so they can work on one output dir at once, and any of them resumes what
another left unfinished.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from emo_cli.errors import UsageError, describe_os_error
from emo_cli.execution.executors import Executor, make_executor
from emo_cli.execution.ownership import check_output_ownership
from emo_cli.execution.results import EventSink, RenderEvent, RunSummary, stamped
from emo_cli.execution.run_report import write_run_report
from emo_cli.execution.shards import select_shard
from emo_cli.execution.workdir import job_log
from emo_cli.planning.job import Job, Plan


def select_jobs(plan: Plan, only: Sequence[str] | None) -> list[Job]:
    """The plan's jobs, or those named in `only` (by name or id prefix), in plan order."""
    if not only:
        return list(plan.jobs)

    def named(job: Job, name: str) -> bool:
        return job.name == name or job.id.startswith(name)

    unknown = [name for name in only if not any(named(job, name) for job in plan.jobs)]
    if unknown:
        known = ", ".join(job.name for job in plan.jobs) or "none"
        raise UsageError(f"--only {', '.join(unknown)}: no such job in {plan.manifest} (jobs: {known})")
    return [job for job in plan.jobs if any(named(job, name) for name in only)]


class JobLogs:
    """Appends each job's events (stamped, one JSON line each) to its work dir's `events.jsonl`
    (`workdir.job_log`), then passes every event on: the job's own history across runs, on
    whichever host or executor rendered it, beside its chunks."""

    def __init__(self, jobs: Sequence[Job], emit: EventSink) -> None:
        self.work_dirs = {job.id: job.work_dir for job in jobs}
        self.emit = emit

    def __call__(self, event: RenderEvent) -> None:
        work_dir = self.work_dirs.get(event.job_id or "")
        if work_dir is not None and work_dir.is_dir():
            log = job_log(work_dir)
            try:
                with log.open("a", encoding="utf-8") as stream:
                    stream.write(json.dumps(stamped(event)) + "\n")
            except OSError:  # the log is a convenience: a full or read-only disk fails the render elsewhere
                with contextlib.suppress(OSError):
                    if log.stat().st_size == 0:
                        log.unlink()  # leave nothing behind that the failed write created
        self.emit(event)


def render(
    plan: Plan,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    shard: str | None = None,
    executor: str | Executor = "inline",
    overwrite: bool | None = None,
) -> RunSummary:
    """Render every job of `plan` (or those in `only`, or shard `shard` of them) on `executor`.

    `executor` is an `Executor` (`InlineExecutor(device=...)`, `LocalPoolExecutor(devices=
    "cuda:0,1", retries=2)`, `RayExecutor(address="auto")`) or the name of one, built with its
    defaults (see `make_executor`). Each backend is instantiated once per worker process and
    reused. A job that fails with an `EmoError` is recorded as failed and the others still run.
    Ctrl-C (or SIGTERM in a pool) raises KeyboardInterrupt once the workers have stopped;
    finished chunks stay on disk.

    Before anything renders, a job whose output path holds another job's video is refused
    (RenderError naming both jobs, every clash at once) unless `overwrite` (None: the plan's
    `policy.overwrite`); see `ownership`.
    At the end, `<output_dir>/run-report.json` records every job's outcome (`run_report`).
    """
    runner = make_executor(executor) if isinstance(executor, str) else executor
    emit = JobLogs(plan.jobs, events or (lambda event: None))
    began, started = time.monotonic(), datetime.now(timezone.utc)
    jobs = select_jobs(plan, only)
    if shard is not None:
        jobs = select_shard(jobs, shard)
    if overwrite is None:
        overwrite = bool(plan.policy.get("overwrite", False))
    check_output_ownership(jobs, overwrite=overwrite)
    emit(RenderEvent.of(
        "run_started", manifest=str(plan.manifest), output_dir=str(plan.output_dir),
        jobs=len(jobs), frames=sum(job.num_frames for job in jobs), resume=resume,
        shard=shard, executor=runner.name, devices=runner.where(),
    ))  # fmt: skip
    summary = RunSummary(tuple(runner.run(jobs, resume=resume, emit=emit)), time.monotonic() - began)
    try:
        report: str | None = str(write_run_report(plan, summary, started=started, finished=datetime.now(timezone.utc),
                                                  executor=runner.name, shard=shard))  # fmt: skip
    except OSError as exc:  # a full disk or a read-only output_dir: the outputs stand, say why it is missing
        report = None
        emit(RenderEvent.of("run_report_failed", error=describe_os_error(exc)))
    emit(RenderEvent.of("run_done", **summary.to_dict(), run_report=report))
    return summary


def render_manifest(
    manifest: Path | str,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    shard: str | None = None,
    executor: str | Executor = "inline",
    overwrite: bool | None = None,
) -> RunSummary:
    """Load and plan `manifest` (raising ManifestError with every problem), then `render` it."""
    from emo_cli.planning.plan import plan_manifest

    return render(plan_manifest(Path(manifest)), resume=resume, events=events, only=only, shard=shard,
                  executor=executor, overwrite=overwrite)  # fmt: skip
