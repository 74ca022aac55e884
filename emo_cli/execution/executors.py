"""Where a plan's jobs run, registered by name like the backends: the `emo_cli.executors`
entry-point group, where the built-in ones are its first members (see pyproject.toml).

    inline   here, one after another (library use: tests, notebooks); a job another process
             holds is reported as `held`, not waited for
    local    a pool of worker processes on this machine, one per device (`--devices`), jobs
             longest-first, a dead worker restarted and its job retried
    ray      actors on a Ray cluster, one per GPU (or share of CPUs), each holding its backend

Every executor renders with `render_job`, claims each job's lease before rendering it and
reports through the same events, so they can work on one output dir at once and any of them
resumes what another left unfinished. A package adds one through the entry points,
`register_executor` in-process (tests, notebooks); `make_executor(name, **options)` builds one
from the options it takes (the CLI passes all of its own). An installed executor that cannot
be loaded, whatever its module raises, fails with one message when it is asked for; the others
work as before.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from emo_cli.backends.base import Backend
from emo_cli.backends.registry import get_backend_class, installed_entry_points
from emo_cli.errors import EmoError, UsageError
from emo_cli.execution.devices import Device, parse_devices
from emo_cli.execution.jobs import is_finished, render_job
from emo_cli.execution.lease import JobLease, LeaseLost, read_lease, rendering_under
from emo_cli.execution.results import EventSink, JobFailed, JobResult, JobStatus, RenderEvent
from emo_cli.execution.scheduling import DONE, FAILED, HELD, JobOutcome, PoolEvent
from emo_cli.execution.worker import shared_work
from emo_cli.planning.job import Job

# Without --address, Ray starts a one-machine cluster: keep it on the loopback, no dashboard.
LOCAL_RAY = {"_node_ip_address": "127.0.0.1", "include_dashboard": False, "log_to_driver": False}


class Executor(ABC):
    """Renders a list of jobs somewhere and returns one `JobResult` per job, in their order."""

    name: ClassVar[str]

    @abstractmethod
    def where(self) -> str:
        """Where the jobs run, for the `run_started` event ("in-process", "cuda:0,1", "ray")."""

    @abstractmethod
    def run(self, jobs: Sequence[Job], *, resume: bool, emit: EventSink) -> list[JobResult]:
        """Render `jobs`; KeyboardInterrupt once the workers have stopped, if interrupted."""


GROUP = "emo_cli.executors"

_registered: dict[str, type[Executor]] = {}
_loaded: dict[str, type[Executor]] = {}  # entry points loaded and checked in this process


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Register an executor class under its `name` in this process (usable as a decorator)."""
    _registered[cls.name] = cls
    return cls


def executor_names() -> list[str]:
    return sorted(set(_registered) | {ep.name for ep in installed_entry_points(GROUP)})


def get_executor_class(name: str) -> type[Executor]:
    """The executor class called `name`: registered in this process, or installed.

    Raises:
        UsageError: no executor has that name, or the installed one cannot be loaded (its
            import raises, or it is not an `Executor`), naming it and what to do.
    """
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    for ep in installed_entry_points(GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # whatever a plugin's import raises, it is this executor's problem
                raise UsageError(
                    f"--executor {name}: executor {name!r} is installed but cannot be imported "
                    f"({type(exc).__name__}: {exc}); reinstall emo-cli or the package that provides it"
                ) from exc
            if not (isinstance(cls, type) and issubclass(cls, Executor)):
                raise UsageError(f"--executor {name}: entry point {ep.value} is not an Executor subclass; "
                                 "upgrade or uninstall the package that provides it")  # fmt: skip
            _loaded[name] = cls
            return cls
    raise UsageError(f"--executor {name}: expected one of {', '.join(executor_names()) or 'none installed'}")


def make_executor(name: str, **options: Any) -> Executor:
    """The executor called `name`, built from those of `options` its class takes."""
    cls = get_executor_class(name)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return cls(**{key: value for key, value in options.items() if key in fields})


def backend_needs(job: Job) -> str:
    """"gpu" or "cpu": what the job's backend needs (a backend that cannot load says "cpu": its
    job fails at once with the backend's own message)."""
    try:
        return get_backend_class(job.settings.backend).resources
    except EmoError:
        return "cpu"


@dataclass(frozen=True)
class InlineExecutor(Executor):
    """Here, one after another, on `device` (the backend's default when None)."""

    name: ClassVar[str] = "inline"
    device: str | None = None

    def where(self) -> str:
        return "in-process"

    def run(self, jobs: Sequence[Job], *, resume: bool, emit: EventSink) -> list[JobResult]:
        backends: dict[str, Backend | EmoError] = {}
        results: list[JobResult] = []
        for job in jobs:
            name = job.settings.backend
            if name not in backends:
                try:
                    backends[name] = get_backend_class(name)(device=self.device)
                except EmoError as exc:
                    backends[name] = exc  # every job that asks for it fails with this error
            results.append(self._run_one(job, backends[name], resume=resume, emit=emit))
        return results

    def _run_one(self, job: Job, backend: Backend | EmoError, *, resume: bool, emit: EventSink) -> JobResult:
        began = time.monotonic()
        try:
            lease = JobLease.claim(job.work_dir)
        except EmoError as exc:
            return unclaimable(job, str(exc), emit)
        if lease is None:
            info = read_lease(job.work_dir)
            holder = info.holder if info is not None else "another process"
            emit(RenderEvent.of("job_held", job_id=job.id, job=job.name, holder=holder))
            return job_result(job, "held", error=f"job {job.name} is being rendered by {holder}")
        try:
            if isinstance(backend, EmoError):
                raise JobFailed(job, f"{job.field}, settings.backend", backend)
            with rendering_under(job.work_dir, lease.info.token):
                return render_job(job, backend, events=emit, resume=resume)
        except LeaseLost as exc:  # stalled past the timeout: another render took the job over
            emit(RenderEvent.of("job_held", job_id=job.id, job=job.name, holder=exc.holder))
            return job_result(job, "held", error=f"job {job.name}: {exc}")
        except JobFailed as exc:
            if isinstance(exc.cause, LeaseLost):
                emit(RenderEvent.of("job_held", job_id=job.id, job=job.name, holder=exc.cause.holder))
                return job_result(job, "held", error=f"job {job.name}: {exc.cause}")
            emit(RenderEvent.of("job_failed", job_id=job.id, job=job.name, output=str(job.output),
                  error=str(exc), error_type=type(exc.cause).__name__))  # fmt: skip
            return job_result(job, "failed", seconds=time.monotonic() - began, error=str(exc))
        finally:
            lease.release()


@dataclass(frozen=True)
class LocalPoolExecutor(Executor):
    """One worker process per device of `devices` (see `parse_devices`), jobs longest-first.

    A job goes to a worker whose device its backend needs (`Backend.resources`): with GPUs in
    the pool a GPU backend never lands on a CPU worker, and `auto` adds one CPU worker for CPU
    backends' jobs when it found GPUs, so those do not take a GPU worker's turn.
    """

    name: ClassVar[str] = "local"
    devices: str = "auto"
    retries: int = 2

    def where(self) -> str:
        return self.devices

    def pool_devices(self, needs: Sequence[str]) -> list[Device]:
        devices = parse_devices(self.devices)
        auto = self.devices.strip().lower() == "auto"
        if auto and "cpu" in needs and all(d.kind == "cuda" for d in devices):
            devices.append(Device(kind="cpu", index=0, threads=1))
        return devices

    def run(self, jobs: Sequence[Job], *, resume: bool, emit: EventSink) -> list[JobResult]:
        from emo_cli.execution.pool import run_pool

        needs = {job.id: backend_needs(job) for job in jobs}
        summary = run_pool(shared_work(jobs), job_function(resume), self.pool_devices(list(needs.values())),
                           retries=self.retries, on_event=PoolEvents(jobs, emit), needs=needs)  # fmt: skip
        if summary.interrupted:
            raise KeyboardInterrupt
        return [settle(job, summary.outcomes[job.id], emit) for job in jobs]


@dataclass(frozen=True)
class RayExecutor(Executor):
    """Actors on the Ray cluster at `address` (or a local one): a GPU backend's actor asks Ray
    for one GPU, a CPU backend's for one CPU and no GPU."""

    name: ClassVar[str] = "ray"
    address: str | None = None
    retries: int = 2

    def where(self) -> str:
        return "ray"

    def run(self, jobs: Sequence[Job], *, resume: bool, emit: EventSink) -> list[JobResult]:
        from emo_cli.execution.ray_executor import run_on_ray

        by_need: dict[str, list[Job]] = {}
        for job in jobs:
            by_need.setdefault(backend_needs(job), []).append(job)
        outcomes: dict[str, JobOutcome] = {}
        for need, group in by_need.items():
            summary = run_on_ray(shared_work(group), job_function(resume), address=self.address,
                                 num_gpus=1.0 if need == "gpu" else 0.0, retries=self.retries,
                                 on_event=PoolEvents(group, emit),
                                 init_kwargs=LOCAL_RAY if self.address is None else None)  # fmt: skip
            if summary.interrupted:
                raise KeyboardInterrupt
            outcomes.update(summary.outcomes)
        return [settle(job, outcomes[job.id], emit) for job in jobs]


def job_function(resume: bool) -> str:
    from emo_cli.execution.worker import FRESH_JOB, RESUME_JOB

    return RESUME_JOB if resume else FRESH_JOB


class PoolEvents:
    """Turns the workers' `PoolEvent`s into `RenderEvent`s, tagged with worker and device.

    The render loop's own events (job_started, chunk_done, job_done, job_skipped) come through
    as they are; the scheduler's bookkeeping becomes job_failed, job_assigned, job_retrying,
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
        fields: dict[str, Any] = {}
        job = self.jobs.get(event.job_id) if event.job_id else None
        if job is not None:
            fields.update(job_id=job.id, job=job.name, output=str(job.output))
        data = dict(event.data)
        if event.kind == "failed":
            data["error"] = data.pop("message", "")
        fields.update(data)
        fields.update(worker=event.worker, device=event.device)
        self.emit(RenderEvent(self.RENAMED.get(event.kind, event.kind), fields))


def unclaimable(job: Job, error: str, emit: EventSink) -> JobResult:
    """The result of a job whose lease could not be written (a full or read-only disk): skipped
    if its output and sidecar are already the files its journal recorded, else failed."""
    from emo_cli.execution.workdir import Journal

    if is_finished(job, Journal.load(job.work_dir)):
        emit(RenderEvent.of("job_skipped", job_id=job.id, job=job.name, output=str(job.output),
              reason="already done", frames=job.num_frames))  # fmt: skip
        return job_result(job, "skipped")
    emit(RenderEvent.of("job_failed", job_id=job.id, job=job.name, output=str(job.output), error=error,
          error_type="StorageError"))  # fmt: skip
    return job_result(job, "failed", error=f"job {job.name}: {error}")


def settle(job: Job, outcome: JobOutcome, emit: EventSink) -> JobResult:
    """`from_outcome`, except for a job whose lease could not be written (see `unclaimable`)."""
    if outcome.at_claim:
        return unclaimable(job, outcome.message, emit)
    return from_outcome(job, outcome)


def from_outcome(job: Job, outcome: JobOutcome) -> JobResult:
    """A worker's outcome as the job's result (a `SharedWork` returns one result per job)."""
    if outcome.status == DONE and isinstance(outcome.value, tuple):
        mine = [r for r in outcome.value if isinstance(r, JobResult) and r.output == job.output]
        outcome = dataclasses.replace(outcome, value=mine[0] if mine else None)
    if outcome.status == DONE and isinstance(outcome.value, JobResult):
        return dataclasses.replace(outcome.value, device=outcome.device)
    if outcome.status == DONE:  # the result did not come back (it would not pickle)
        return job_result(job, "done", seconds=outcome.seconds, device=outcome.device)
    if outcome.status == HELD:
        return job_result(job, "held", error=f"job {job.name} is {outcome.message}", device=outcome.device)
    error = outcome.message if outcome.status == FAILED else f"job {job.name}: {outcome.message}"
    if outcome.traceback:
        error += "\n" + outcome.traceback
    return job_result(job, "failed", seconds=outcome.seconds, error=error, device=outcome.device)


def job_result(job: Job, status: JobStatus, *, seconds: float = 0.0, error: str | None = None,
               device: str | None = None) -> JobResult:  # fmt: skip
    return JobResult(job.id, job.name, job.output, status, job.num_frames, len(job.chunks()), 0, seconds,
                     error=error, device=device)  # fmt: skip
