"""Execution: render a plan's jobs chunk by chunk, resume from checkpoints, mux the outputs.

    render(plan, *, resume=True, events=None, only=None) -> RunSummary
    render_manifest(path, *, resume=True, events=None, only=None) -> RunSummary
    render_job(job, backend, *, events=None, resume=True) -> JobResult
    read_progress(job) -> JobProgress
"""

from emo_cli.execution.jobs import render_job
from emo_cli.execution.journal import JobProgress, read_progress
from emo_cli.execution.results import Event, EventSink, JobFailed, JobResult, RunSummary
from emo_cli.execution.runner import render, render_manifest

__all__ = [
    "Event",
    "EventSink",
    "JobFailed",
    "JobProgress",
    "JobResult",
    "RunSummary",
    "read_progress",
    "render",
    "render_job",
    "render_manifest",
]
