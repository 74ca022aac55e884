"""Execution: render a plan's jobs chunk by chunk, resume from checkpoints, publish the outputs.

    render(plan, *, resume=True, events=None, only=None, shard=None, executor="inline") -> RunSummary
    render_manifest(path, **the same options) -> RunSummary
    render_job(job, backend, *, events=None, resume=True) -> JobResult
    read_progress(job) -> JobProgress

The names load on first use, so a small module of this package (`emo_cli.execution.status`)
can be imported without the render loop, ffmpeg wrappers or the pool.
"""

from __future__ import annotations

from emo_cli.lazy import lazy_attributes

_HOMES = {
    "render_job": "jobs",
    "JobProgress": "workdir",
    "read_progress": "workdir",
    "Event": "results",
    "EventSink": "results",
    "RenderEvent": "results",
    "JobFailed": "results",
    "JobResult": "results",
    "RunSummary": "results",
    "render": "runner",
    "render_manifest": "runner",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_attributes(__name__, _HOMES)
