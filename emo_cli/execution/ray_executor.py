"""Render jobs as Ray tasks across a cluster, against one shared output dir.

Each job is one task that asks Ray for a GPU (or CPUs, for CPU backends); Ray sets the task's
CUDA_VISIBLE_DEVICES. The task claims the job's lease on the shared output dir exactly as the
local pool does, so a Ray run, local `emo render` runs and array-job shards can share an
output dir without rendering a job twice. The job function is the pool's: named by import
path, called as `function(job, device, events)`, idempotent.

Ray starts a fresh worker process for every task that uses a GPU (its default `max_calls=1`),
so a backend is loaded once per job here, not once per device as in the local pool.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from emo_cli.errors import BackendError, EmoError, UsageError
from emo_cli.execution.devices import Device
from emo_cli.execution.lease import DEFAULT_TIMEOUT_S, JobLease, read_lease
from emo_cli.execution.pool import (
    DONE,
    FAILED,
    HELD,
    INTERRUPTED,
    JobEvents,
    JobOutcome,
    PoolEvent,
    PoolSummary,
    resolve_job_function,
)
from emo_cli.execution.shards import Schedulable, longest_first


def run_on_ray(
    jobs: Iterable[Schedulable],
    run_job: str,
    *,
    address: str | None = None,
    num_gpus: float = 1.0,
    num_cpus: float = 1.0,
    retries: int = 2,
    on_event: Callable[[PoolEvent], None] | None = None,
    lease_timeout_s: float = DEFAULT_TIMEOUT_S,
    held_retry_s: float = 5.0,
    wait_for_held: bool = True,
    init_kwargs: Mapping[str, Any] | None = None,
) -> PoolSummary:
    """Render `jobs` as Ray tasks; return every job's outcome (as `run_pool` does).

    Args:
        jobs: objects with `id`, `duration` and `work_dir` (a `Job`); submitted longest-first.
        run_job: import path of the job function, importable on every Ray node.
        address: the cluster to join ("auto", "ray://head:10001"); None joins the cluster this
            process is already connected to, or starts a local one.
        num_gpus: GPUs per job (0 for CPU backends). num_cpus: CPUs per job.
        retries: how many times Ray retries a task whose worker process died.
        on_event: called in this process with the tasks' `PoolEvent`s (device is "host/cuda:N").
        lease_timeout_s, held_retry_s, wait_for_held: as for `run_pool`.
        init_kwargs: extra `ray.init` arguments when this call connects to Ray.
    """
    if retries < 0:
        raise UsageError(f"--retries {retries}: must be 0 or more")
    if num_gpus < 0 or num_cpus < 0:
        raise UsageError("GPUs and CPUs per job must be 0 or more")
    resolve_job_function(run_job)  # fail here, not in every task
    try:
        import ray
    except ImportError:
        raise BackendError("Ray is not installed: install emo-cli with the `ray` extra") from None

    started_ray = False
    if not ray.is_initialized():
        ray.init(address=address, **dict(init_kwargs or {}))
        started_ray = True
    try:
        return _RayRun(
            ray,
            jobs,
            run_job,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            retries=retries,
            on_event=on_event,
            lease_timeout_s=lease_timeout_s,
            held_retry_s=held_retry_s,
            wait_for_held=wait_for_held,
        ).run()
    finally:
        if started_ray:
            ray.shutdown()


def render_task(
    job: Schedulable, run_job: str, lease_timeout_s: float, events_queue: Any | None
) -> tuple[Any, ...]:
    """One job inside a Ray task: claim its lease, call the job function, give the lease back."""
    import ray

    host = socket.gethostname()
    lease = JobLease.acquire(job.work_dir, host=host, pid=os.getpid(), timeout_s=lease_timeout_s)
    if lease is None:
        info = read_lease(job.work_dir)
        return (HELD, info.holder if info is not None else "another process")
    try:
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        if gpu_ids:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(gpu_ids))
            index = int(gpu_ids[0]) if gpu_ids[0].isdigit() else 0
            device = Device(kind="cuda", index=index, visible_id=visible)
        else:
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
            device = Device(kind="cpu", index=0, threads=max(1, int(cpus)))
        label = f"{host}/{device.name}"

        def send(message: tuple[Any, ...]) -> None:
            if events_queue is not None:
                events_queue.put_nowait((*message, label))

        events = JobEvents(send, job.id)
        events.emit("started", pid=os.getpid())
        function = resolve_job_function(run_job)
        start = time.monotonic()
        try:
            value = function(job, device, events)
        except EmoError as exc:
            return (FAILED, str(exc), None, time.monotonic() - start, label)
        except Exception as exc:
            return (
                FAILED,
                f"{type(exc).__name__}: {exc}",
                traceback.format_exc(),
                time.monotonic() - start,
                label,
            )
        return (DONE, value, time.monotonic() - start, label)
    finally:
        lease.release()


class _RayRun:
    def __init__(
        self,
        ray: Any,
        jobs: Iterable[Schedulable],
        run_job: str,
        *,
        num_gpus: float,
        num_cpus: float,
        retries: int,
        on_event: Callable[[PoolEvent], None] | None,
        lease_timeout_s: float,
        held_retry_s: float,
        wait_for_held: bool,
    ):
        self.ray = ray
        unique: dict[str, Schedulable] = {}
        for job in jobs:
            unique.setdefault(job.id, job)
        self.jobs = unique
        self.run_job = run_job
        self.on_event = on_event
        self.lease_timeout_s = lease_timeout_s
        self.held_retry_s = held_retry_s
        self.wait_for_held = wait_for_held
        self.task = ray.remote(render_task).options(
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            max_retries=retries,
            retry_exceptions=False,
            name="emo-render",
        )
        self.queue = None
        if on_event is not None:
            from ray.util.queue import Queue

            self.queue = Queue(actor_options={"num_cpus": 0})
        self.running: dict[Any, Schedulable] = {}
        self.held: list[tuple[float, Schedulable]] = []
        self.holders: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.summary = PoolSummary()

    def run(self) -> PoolSummary:
        try:
            for job in longest_first(self.jobs.values()):
                self._submit(job)
            while self.running or (self.held and self.wait_for_held):
                self._resubmit_due()
                if not self.running:  # only held jobs left: wait for the first to come due
                    time.sleep(max(0.0, min(when for when, _ in self.held) - time.monotonic()))
                    continue
                ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=0.5)
                self._drain_events()
                for ref in ready:
                    self._collect(ref)
            self._drain_events()
        except KeyboardInterrupt:
            self.summary.interrupted = True
            for ref in self.running:
                self.ray.cancel(ref, force=True)
        finally:
            if self.queue is not None:
                self.queue.shutdown(force=True)
        for job_id in self.jobs:
            if job_id not in self.summary.outcomes:
                held = job_id in self.holders and not self.summary.interrupted
                status = HELD if held else INTERRUPTED
                message = f"held by {self.holders[job_id]}" if held else "the run was interrupted"
                self.summary.outcomes[job_id] = JobOutcome(
                    job_id, status, message, attempts=self.attempts.get(job_id, 0)
                )
                self._emit(status, job_id, None, message=message)
        self.summary.outcomes = {job_id: self.summary.outcomes[job_id] for job_id in self.jobs}
        return self.summary

    def _submit(self, job: Schedulable) -> None:
        self.attempts[job.id] = self.attempts.get(job.id, 0) + 1
        ref = self.task.remote(job, self.run_job, self.lease_timeout_s, self.queue)
        self.running[ref] = job

    def _resubmit_due(self) -> None:
        now = time.monotonic()
        due = [job for when, job in self.held if when <= now]
        self.held = [(when, job) for when, job in self.held if when > now]
        for job in due:
            self._submit(job)

    def _collect(self, ref: Any) -> None:
        job = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker died more often than max_retries
            message = f"the Ray task failed: {type(exc).__name__}: {exc}"
            self._record(JobOutcome(job.id, FAILED, message.splitlines()[0]), None)
            return
        kind = result[0]
        if kind == HELD:
            self.holders[job.id] = result[1]
            self.held.append((time.monotonic() + self.held_retry_s, job))
            self.attempts[job.id] -= 1  # it never ran
            self._emit(HELD, job.id, None, holder=result[1])
            return
        self.holders.pop(job.id, None)
        if kind == DONE:
            _, value, seconds, label = result
            self._record(JobOutcome(job.id, DONE, value=value, seconds=seconds), label)
        else:
            _, message, trace, seconds, label = result
            self._record(JobOutcome(job.id, FAILED, message, seconds=seconds, traceback=trace), label)

    def _record(self, outcome: JobOutcome, label: str | None) -> None:
        outcome.attempts = self.attempts.get(outcome.job_id, 0)
        outcome.device = label
        self.summary.outcomes[outcome.job_id] = outcome
        data: dict[str, Any] = {"seconds": outcome.seconds}
        if outcome.status == FAILED:
            data["message"] = outcome.message
        self._emit(outcome.status, outcome.job_id, label, **data)

    def _drain_events(self) -> None:
        if self.queue is None:
            return
        count = self.queue.qsize()
        if count == 0:
            return
        for _, job_id, kind, data, label in self.queue.get_nowait_batch(count):
            self._emit(kind, job_id, label, **data)

    def _emit(self, kind: str, job_id: str | None, label: str | None, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(
                PoolEvent(kind=kind, job_id=job_id, worker=None, device=label, data=data, time=time.time())
            )
