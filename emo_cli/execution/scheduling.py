"""What every executor shares: the job outcomes, the run summary, the one event type that
travels from workers to the caller, and the bookkeeping of which job goes next.

`Scheduler` hands jobs out longest-first, puts aside jobs another process holds and tries them
again `held_retry_s` later, retries the job of a worker that died up to `retries` times, and
closes the run with an outcome for every job (those never finished are `held` or
`interrupted`). The local pool and the Ray executor differ only in how they reach their
workers and where the lease is claimed (the pool claims it before handing a job out; a Ray
actor claims it on its node).

A job function is named by import path, "package.module:function", and is called as
`function(job, device, events)` in the worker; `JobEvents` carries its progress back.
"""

from __future__ import annotations

import importlib
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emo_cli.errors import EmoError, UsageError
from emo_cli.execution.shards import Schedulable, longest_first

DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"
HELD = "held"

_RUN_JOB_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class PoolEvent:
    """Something that happened to a job or a worker, for a live display or a log.

    kind is one of: worker_ready, started, progress (data: done, total and whatever the job
    function adds), done, failed, retrying, held (data: holder), worker_died, interrupted, or
    any kind a job function emits itself.
    """

    kind: str
    job_id: str | None
    worker: int | None
    device: str | None  # "cuda:0" in a local pool, "host/cuda:0" on Ray
    data: dict[str, Any]
    time: float  # time.time() in the process that runs the executor


@dataclass
class JobOutcome:
    job_id: str
    status: str  # done, failed, interrupted or held
    message: str = ""
    attempts: int = 0  # times the job was handed to a worker
    worker: int | None = None
    device: str | None = None
    seconds: float = 0.0  # time in the job function, last attempt
    value: Any = None  # what the job function returned
    traceback: str | None = None  # for failures that are bugs, not EmoErrors
    at_claim: bool = False  # failed before it was handed out: its lease could not be written


@dataclass
class PoolSummary:
    outcomes: dict[str, JobOutcome] = field(default_factory=dict)  # by job id, in the jobs' order
    interrupted: bool = False

    def with_status(self, status: str) -> list[JobOutcome]:
        return [o for o in self.outcomes.values() if o.status == status]

    @property
    def ok(self) -> bool:
        return all(o.status == DONE for o in self.outcomes.values())


class JobEvents:
    """Given to the job function: reports progress back to the executor's process."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None], job_id: str):
        self._send = send
        self.job_id = job_id

    def progress(self, done: int, total: int, **info: Any) -> None:
        """`done` of `total` units (chunks, frames) finished; extra keys ride along."""
        self.emit("progress", done=done, total=total, **info)

    def emit(self, kind: str, **data: Any) -> None:
        self._send(("event", self.job_id, kind, data))


def check_job_function(path: str) -> None:
    if not _RUN_JOB_PATTERN.fullmatch(path):
        raise UsageError(f"job function {path!r}: expected an import path such as package.module:function")


def resolve_job_function(path: str) -> Callable[..., Any]:
    """Import "package.module:function"."""
    check_job_function(path)
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"job function {path!r}: module {module_name} has no {attr}") from None


Fits = Callable[[Schedulable], bool]
Claim = Callable[[Schedulable], str | None]  # None: claimed; else who holds the job


class Scheduler:
    """Which job goes next, and every job's outcome, for one run of an executor."""

    def __init__(self, jobs: Iterable[Schedulable], *, retries: int, held_retry_s: float, wait_for_held: bool,
                 on_event: Callable[[PoolEvent], None] | None) -> None:  # fmt: skip
        if retries < 0:
            raise UsageError(f"--retries {retries}: must be 0 or more")
        unique: dict[str, Schedulable] = {}
        for job in jobs:
            unique.setdefault(job.id, job)
        self.jobs = unique
        self.retries = retries
        self.held_retry_s = held_retry_s
        self.wait_for_held = wait_for_held
        self.on_event = on_event
        self.pending: deque[Schedulable] = deque(longest_first(unique.values()))
        self.retry_first: deque[Schedulable] = deque()  # jobs whose worker died
        self.held: list[tuple[float, Schedulable]] = []  # (when to try again, job)
        self.holders: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.summary = PoolSummary()

    def emit(self, kind: str, job_id: str | None, worker: int | None = None, device: str | None = None,
             **data: Any) -> None:  # fmt: skip
        if self.on_event is not None:
            self.on_event(PoolEvent(kind=kind, job_id=job_id, worker=worker, device=device, data=data,
                                    time=time.time()))  # fmt: skip

    # -- handing out --

    def next_job(self, claim: Claim | None = None, fits: Fits | None = None) -> Schedulable | None:
        """The next job a worker (that takes the jobs `fits` accepts) should render, claimed
        with `claim`; None when none is due. Jobs that another process holds are put aside."""
        fits = fits or (lambda job: True)
        for job in list(self.retry_first):
            if fits(job):
                self.retry_first.remove(job)
                return job
        now = time.monotonic()
        due = [job for when, job in self.held if when <= now]
        self.held = [(when, job) for when, job in self.held if when > now]
        candidates = due + list(self.pending)
        self.pending.clear()
        chosen: Schedulable | None = None
        for index, job in enumerate(candidates):
            if not fits(job):
                self.pending.append(job)
                continue
            try:
                holder = claim(job) if claim is not None else None
            except EmoError as exc:  # the lease cannot be written (a full or read-only disk)
                # The executor decides whether that is a failure or a job already done, and says so.
                self.holders.pop(job.id, None)
                self.summary.outcomes[job.id] = JobOutcome(job.id, FAILED, str(exc), at_claim=True)
                continue
            if holder is not None:
                self.hold(job, holder)
                continue
            self.holders.pop(job.id, None)
            chosen = job
            self.pending.extend(candidates[index + 1 :])
            break
        # Held jobs that came due keep their longest-first place among those still pending.
        self.pending = deque(longest_first(self.pending))
        return chosen

    def hand_out(self, job: Schedulable) -> int:
        """Count an attempt at `job`; returns its number."""
        self.attempts[job.id] = self.attempts.get(job.id, 0) + 1
        return self.attempts[job.id]

    def hold(self, job: Schedulable, holder: str, *, handed_out: bool = False) -> None:
        """Another process holds `job`: try it again later (`handed_out`: the attempt did not run)."""
        if handed_out:
            self.attempts[job.id] -= 1
        self.holders[job.id] = holder
        self.held.append((time.monotonic() + self.held_retry_s, job))
        self.emit(HELD, job.id, holder=holder)

    # -- results --

    def finish(self, outcome: JobOutcome, worker: int | None, device: str | None) -> None:
        """Record a job's outcome (done, or failed in the job function)."""
        outcome.attempts = self.attempts.get(outcome.job_id, 0)
        outcome.worker, outcome.device = worker, device
        self.holders.pop(outcome.job_id, None)
        self.summary.outcomes[outcome.job_id] = outcome
        data: dict[str, Any] = {"seconds": outcome.seconds}
        if outcome.status == FAILED:
            data["message"] = outcome.message
        self.emit(outcome.status, outcome.job_id, worker, device, **data)

    def worker_died(self, job: Schedulable, cause: str, worker: int | None, device: str | None) -> bool:
        """The worker rendering `job` died: retry it first (True) or, out of retries, fail it."""
        attempts = self.attempts.get(job.id, 0)
        if attempts <= self.retries:
            self.retry_first.append(job)
            self.emit("retrying", job.id, worker, device, cause=cause, attempt=attempts + 1)
            return True
        message = f"the worker process died ({cause}); gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
        self.summary.outcomes[job.id] = JobOutcome(job.id, FAILED, message, attempts=attempts, worker=worker,
                                                   device=device)  # fmt: skip
        self.emit(FAILED, job.id, worker, device, message=message)
        return False

    # -- the run --

    def has_work(self) -> bool:
        """Jobs wait to be handed out now (not counting held jobs)."""
        return bool(self.pending or self.retry_first)

    def finished(self, running: int) -> bool:
        if running or self.has_work():
            return False
        return not self.held or not self.wait_for_held

    def seconds_to_next_held(self, cap: float) -> float:
        """How long to wait before a held job comes due (at most `cap`)."""
        if not self.held or self.has_work():
            return cap
        return max(0.0, min(cap, min(when for when, _ in self.held) - time.monotonic()))

    def close(self, *, interrupted: bool) -> PoolSummary:
        """Every job's outcome, in the jobs' order; the unfinished ones held or interrupted."""
        self.summary.interrupted = interrupted
        for job_id in self.jobs:
            if job_id not in self.summary.outcomes:
                held = job_id in self.holders and not interrupted
                status = HELD if held else INTERRUPTED
                message = f"held by {self.holders[job_id]}" if held else "the run was interrupted"
                self.summary.outcomes[job_id] = JobOutcome(job_id, status, message,
                                                           attempts=self.attempts.get(job_id, 0))  # fmt: skip
                self.emit(status, job_id, message=message)
        self.summary.outcomes = {job_id: self.summary.outcomes[job_id] for job_id in self.jobs}
        return self.summary
