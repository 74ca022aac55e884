"""Render jobs on a Ray cluster: one actor per device, each holding its backend, jobs handed out.

Each actor asks Ray for one GPU (or CPUs, for CPU backends; Ray sets its CUDA_VISIBLE_DEVICES),
imports the job function once and renders job after job, so whatever the job function caches
per process (a backend with its weights, see `worker`) loads once per actor, not once per job
(as Ray's batch-inference guide does: load the model in the actor's constructor, reuse it).

The driver hands jobs out longest-first with the executors' shared `Scheduler`. An actor claims
each job's lease on the shared output dir exactly as the local pool does, so a Ray run, local
`emo render` runs and array-job shards can share an output dir without rendering a job twice.
The job function is the pool's: named by import path, called as `function(job, device, events)`,
idempotent. An actor that dies (out of memory, a lost node) is replaced and its job retried up
to `retries` times.
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
from emo_cli.execution.lease import DEFAULT_TIMEOUT_S, JobLease, read_lease, rendering_under
from emo_cli.execution.scheduling import (
    DONE,
    FAILED,
    HELD,
    JobEvents,
    JobOutcome,
    PoolEvent,
    PoolSummary,
    Scheduler,
    resolve_job_function,
)
from emo_cli.execution.shards import Schedulable


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
    actors: int | None = None,
) -> PoolSummary:
    """Render `jobs` on Ray actors; return every job's outcome (as `run_pool` does).

    Args:
        jobs: objects with `id`, `duration` and `work_dir` (a `Job`); handed out longest-first.
        run_job: import path of the job function, importable on every Ray node.
        address: the cluster to join ("auto", "ray://head:10001"); None joins the cluster this
            process is already connected to, or starts a local one.
        num_gpus: GPUs per actor (0 for CPU backends). num_cpus: CPUs per actor.
        retries: how many times a job is retried after its actor died.
        on_event: called in this process with the actors' `PoolEvent`s (device is "host/cuda:N").
        lease_timeout_s, held_retry_s, wait_for_held: as for `run_pool`.
        init_kwargs: extra `ray.init` arguments when this call connects to Ray.
        actors: how many actors to start; default as many as the cluster's GPUs (or CPUs)
            allow at `num_gpus` (or `num_cpus`) each, and no more than there are jobs.
    """
    if num_gpus < 0 or num_cpus < 0:
        raise UsageError("GPUs and CPUs per job must be 0 or more")
    scheduler = Scheduler(jobs, retries=retries, held_retry_s=held_retry_s, wait_for_held=wait_for_held,
                          on_event=on_event)  # fmt: skip
    resolve_job_function(run_job)  # fail here, not in every actor
    try:
        import ray
    except ImportError:
        raise BackendError("Ray is not installed: install emo-cli with the `ray` extra") from None

    started_ray = False
    if not ray.is_initialized():
        ray.init(address=address, **dict(init_kwargs or {}))
        started_ray = True
    try:
        count = actors if actors is not None else _actor_count(ray, num_gpus, num_cpus)
        run = _RayRun(ray, scheduler, run_job, num_gpus=num_gpus, num_cpus=num_cpus,
                      lease_timeout_s=lease_timeout_s)  # fmt: skip
        return run.run(max(1, min(count, len(scheduler.jobs))))
    finally:
        if started_ray:
            ray.shutdown()


def _actor_count(ray: Any, num_gpus: float, num_cpus: float) -> int:
    total = ray.cluster_resources()
    if num_gpus > 0:
        return int(total.get("GPU", 0) // num_gpus)
    if num_cpus > 0:
        return int(total.get("CPU", 0) // num_cpus)
    return 1


class RenderActor:
    """One device's worker on Ray: the job function imported once, then job after job."""

    def __init__(self, number: int, run_job: str, lease_timeout_s: float, events_queue: Any | None) -> None:
        import ray

        self.function = resolve_job_function(run_job)
        self.lease_timeout_s = lease_timeout_s
        self.queue = events_queue
        self.host = socket.gethostname()
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        if gpu_ids:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(gpu_ids))
            index = int(gpu_ids[0]) if gpu_ids[0].isdigit() else 0
            self.device = Device(kind="cuda", index=index, visible_id=visible)
        else:
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
            self.device = Device(kind="cpu", index=number, threads=max(1, int(cpus)))
        self.label = f"{self.host}/{self.device.name}"

    def render(self, job: Schedulable) -> tuple[Any, ...]:
        """Claim the job's lease, call the job function, give the lease back."""
        try:
            lease = JobLease.claim(job.work_dir, host=self.host, pid=os.getpid(), timeout_s=self.lease_timeout_s)
        except EmoError as exc:  # the lease cannot be written (a full or read-only disk)
            return (FAILED, str(exc), None, 0.0, self.label)
        if lease is None:
            info = read_lease(job.work_dir)
            return (HELD, info.holder if info is not None else "another process")
        try:
            events = JobEvents(self._send, job.id)
            events.emit("started", pid=os.getpid())
            start = time.monotonic()
            try:
                with rendering_under(job.work_dir, lease.info.token):
                    value = self.function(job, self.device, events)
            except EmoError as exc:
                return (FAILED, str(exc), None, time.monotonic() - start, self.label)
            except Exception as exc:
                return (FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc(), time.monotonic() - start,
                        self.label)  # fmt: skip
            return (DONE, value, time.monotonic() - start, self.label)
        finally:
            lease.release()

    def _send(self, message: tuple[Any, ...]) -> None:
        if self.queue is not None:
            self.queue.put_nowait((*message, self.label))


class _RayRun:
    def __init__(self, ray: Any, scheduler: Scheduler, run_job: str, *, num_gpus: float, num_cpus: float,
                 lease_timeout_s: float):  # fmt: skip
        self.ray = ray
        self.scheduler = scheduler
        self.run_job = run_job
        self.lease_timeout_s = lease_timeout_s
        self.actor_class = ray.remote(RenderActor).options(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0,
                                                           max_task_retries=0)  # fmt: skip
        self.queue = None
        if scheduler.on_event is not None:
            from ray.util.queue import Queue

            self.queue = Queue(actor_options={"num_cpus": 0})
        self.idle: list[tuple[int, Any]] = []  # (number, actor)
        self.running: dict[Any, tuple[int, Any, Schedulable]] = {}  # ref -> (number, actor, job)

    def run(self, count: int) -> PoolSummary:
        interrupted = False
        try:
            self.idle = [(number, self._new_actor(number)) for number in range(count)]
            while not self.scheduler.finished(running=len(self.running)):
                self._dispatch()
                if not self.running:  # only held jobs left: wait for the first to come due
                    time.sleep(self.scheduler.seconds_to_next_held(0.5))
                    continue
                ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=0.5)
                self._drain_events()
                for ref in ready:
                    self._collect(ref)
            self._drain_events()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for _, actor, _ in self.running.values():
                self.ray.kill(actor)  # stops its job mid-chunk; the lease goes stale with it
            for _, actor in self.idle:
                self.ray.kill(actor)
            if self.queue is not None:
                self.queue.shutdown(force=True)
        return self.scheduler.close(interrupted=interrupted)

    def _new_actor(self, number: int) -> Any:
        return self.actor_class.remote(number, self.run_job, self.lease_timeout_s, self.queue)

    def _dispatch(self) -> None:
        while self.idle:
            job = self.scheduler.next_job()
            if job is None:
                return
            number, actor = self.idle.pop(0)
            self.scheduler.hand_out(job)
            self.running[actor.render.remote(job)] = (number, actor, job)

    def _collect(self, ref: Any) -> None:
        number, actor, job = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:  # the actor's process died: replace it
            self.ray.kill(actor)
            self.idle.append((number, self._new_actor(number)))
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.scheduler.emit("worker_died", job.id, number, None, cause=cause)
            self.scheduler.worker_died(job, cause, number, None)
            return
        except self.ray.exceptions.RayError as exc:
            self.idle.append((number, actor))
            message = f"the Ray task failed: {type(exc).__name__}: {exc}"
            self.scheduler.finish(JobOutcome(job.id, FAILED, message.splitlines()[0]), None, None)
            return
        self.idle.append((number, actor))
        kind = result[0]
        if kind == HELD:
            self.scheduler.hold(job, result[1], handed_out=True)
        elif kind == DONE:
            _, value, seconds, label = result
            self.scheduler.finish(JobOutcome(job.id, DONE, value=value, seconds=seconds), None, label)
        else:
            _, message, trace, seconds, label = result
            self.scheduler.finish(JobOutcome(job.id, FAILED, message, seconds=seconds, traceback=trace), None, label)

    def _drain_events(self) -> None:
        if self.queue is None:
            return
        count = self.queue.qsize()
        if count == 0:
            return
        for _, job_id, kind, data, label in self.queue.get_nowait_batch(count):
            self.scheduler.emit(kind, job_id, None, label, **data)
