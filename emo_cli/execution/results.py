"""What a render reports: one `JobResult` per job, a `RunSummary` per run, and the events."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from emo_cli.errors import EmoError
from emo_cli.planning.job import Job


@dataclass(frozen=True, eq=False)
class RenderEvent(Mapping[str, Any]):
    """Something that happened in a render, as the caller's event sink receives it: from the
    render loop (in this process, or a worker's through the executor's `PoolEvent`s) and from
    the run, to the live view, the logs and `emo render --json`.

    `kind` is run_started, job_started, chunk_done, job_done, job_skipped, job_failed,
    job_held, job_retrying, state_repaired, run_done, worker_ready... and `fields` the rest,
    JSON-ready, in the order they are written. The event reads as the mapping it is written as
    (`{"event": kind, **fields}`), so `event["frames"]` and `dict(event)` work too.
    """

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, /, **fields: Any) -> RenderEvent:
        return cls(kind, fields)

    @classmethod
    def from_dict(cls, event: Mapping[str, Any]) -> RenderEvent:
        """The event written as `event` ({"event": kind, ...})."""
        return cls(event["event"], {key: value for key, value in event.items() if key != "event"})

    @property
    def job_id(self) -> str | None:
        return self.fields.get("job_id")

    @property
    def job(self) -> str | None:
        """The job's name ("anna/fr"), for a job's event."""
        return self.fields.get("job")

    @property
    def device(self) -> str | None:
        """The worker's device, for the events an executor's worker sent ("cuda:0", "host/cuda:0")."""
        return self.fields.get("device")

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **self.fields}

    def __getitem__(self, key: str) -> Any:
        return self.kind if key == "event" else self.fields[key]

    def __iter__(self) -> Iterator[str]:
        yield "event"
        yield from (key for key in self.fields if key != "event")

    def __len__(self) -> int:
        return 1 + sum(1 for key in self.fields if key != "event")


Event = RenderEvent  # what an event sink receives
EventSink = Callable[[RenderEvent], None]

# done: rendered in this run; skipped: finished before; failed: an expected failure or a worker
# that died too often; held: another process held the job's lease (a serial run does not wait).
JobStatus = Literal["done", "skipped", "failed", "held"]


@dataclass(frozen=True)
class JobResult:
    job_id: str
    job: str  # the job's name, "anna/fr"
    output: Path
    status: JobStatus
    frames: int  # frames in the job
    chunks_total: int
    chunks_rendered: int  # rendered in this run (the rest were verified and reused)
    seconds: float
    error: str | None = None
    device: str | None = None  # the worker's device ("cpu:1", "cuda:0", "host/cuda:0" on Ray)
    credentials: str | None = None  # who signed the output's C2PA credentials, or "off"
    qc: str | None = None  # the quality gates' verdict: "pass" or "fail: ..." (None: gates off)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "job": self.job,
            "output": str(self.output),
            "status": self.status,
            "frames": self.frames,
            "chunks_total": self.chunks_total,
            "chunks_rendered": self.chunks_rendered,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "device": self.device,
            "credentials": self.credentials,
            "qc": self.qc,
        }


@dataclass(frozen=True)
class RunSummary:
    results: tuple[JobResult, ...]
    seconds: float
    report: Path | None = None  # the QC report written after the run (report.html), if any

    def count(self, status: JobStatus) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> tuple[JobResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def exit_code(self) -> int:
        """0 when every job is done (rendered now or before), 1 when any failed or was held."""
        return 1 if self.failed or self.count("held") else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "held": self.count("held"),
            "seconds": round(self.seconds, 3),
            "jobs": [r.to_dict() for r in self.results],
        }


EVENT_SCHEMA = 1  # the version of the events' shape as written to JSON (`--json`, logs)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


def stamped(event: RenderEvent) -> dict[str, Any]:
    """The event as written to JSON: schema version and ISO 8601 UTC time (milliseconds) first,
    floats rounded to 3 decimals."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"schema": EVENT_SCHEMA, "time": now, **_rounded(event.to_dict())}


class JobFailed(EmoError):
    """A job could not be rendered because of an expected failure (bad input, backend, media).

    The message starts with the job's name and the manifest field or file at fault; `cause` is
    the original error and the exit code is its own.
    """

    def __init__(self, job: Job, where: str, cause: EmoError) -> None:
        self.job = job
        self.where = where
        self.cause = cause
        self.exit_code = cause.exit_code
        super().__init__(f"job {job.name} ({where}): {cause}")


@contextlib.contextmanager
def failing_as(job: Job, where: str) -> Iterator[None]:
    """Turn an expected failure (`EmoError`) inside the block into `JobFailed(job, where, ...)`;
    a `JobFailed` raised inside keeps its own place."""
    try:
        yield
    except JobFailed:
        raise
    except EmoError as exc:
        raise JobFailed(job, where, exc) from exc
