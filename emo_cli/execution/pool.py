"""The local device pool: one long-lived worker process per device, jobs handed out longest-first.

Each worker is started with the 'spawn' method and its device's environment (a GPU worker
sees only its GPU through CUDA_VISIBLE_DEVICES) before anything can import CUDA. It imports
the job function once and renders job after job, so whatever that function caches per
process (a backend with its weights) is loaded once per device, not once per job.

The pool process owns the bookkeeping (with the `Scheduler` it shares with the Ray executor):
- it claims each job's lease (`emo_cli.execution.lease`) before handing it out, so two pools
  on one output dir never render the same job at once; a job held by a live process
  elsewhere is put aside and tried again later in the run;
- a job whose function raises fails alone (an `EmoError` with its message, anything else
  with its traceback) and the worker takes the next job;
- a worker that dies (SIGKILL, segfault, out of memory) is restarted and its job retried up
  to `retries` times; the render loop's resume makes a retry continue from the last chunk;
- on Ctrl-C, or SIGTERM from a batch scheduler, it stops handing out jobs, stops the
  workers (SIGTERM, which a worker raises as KeyboardInterrupt: the render loop keeps the
  chunk whose encoder is finishing and stops its ffmpeg children), gives the leases back and
  returns a summary in which every unfinished job is `interrupted`;
- given what each job's backend needs (`needs`), it hands a GPU job to a GPU worker and a CPU
  job to a CPU worker when the pool has one of that kind.

The job function is named by import path, "package.module:function", and is called as
`function(job, device, events)` in the worker. It must be idempotent: a job another process
finished while this one waited for its lease is handed out again and should return at once
(the render loop does, from its journal).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from emo_cli.errors import EmoError, ProcessKilled, RenderError, UsageError
from emo_cli.execution.devices import Device
from emo_cli.execution.interrupts import stop
from emo_cli.execution.lease import DEFAULT_TIMEOUT_S, JobLease, LeaseLost, read_lease, rendering_under
from emo_cli.execution.scheduling import (
    DONE,
    FAILED,
    HELD,
    INTERRUPTED,
    JobEvents,
    JobOutcome,
    PoolEvent,
    PoolSummary,
    Scheduler,
    check_job_function,
    resolve_job_function,
)
from emo_cli.execution.shards import Schedulable

__all__ = ["DONE", "FAILED", "HELD", "INTERRUPTED", "JobEvents", "JobOutcome", "PoolEvent", "PoolSummary",
           "resolve_job_function", "run_pool"]  # fmt: skip

_ENV_LOCK = threading.Lock()
_STOP_GRACE_S = 10.0


def run_pool(
    jobs: Iterable[Schedulable],
    run_job: str,
    devices: Sequence[Device],
    *,
    retries: int = 2,
    on_event: Callable[[PoolEvent], None] | None = None,
    lease_timeout_s: float = DEFAULT_TIMEOUT_S,
    held_retry_s: float = 5.0,
    wait_for_held: bool = True,
    host: str | None = None,
    needs: Mapping[str, str] | None = None,
) -> PoolSummary:
    """Render `jobs` on one worker process per device; return every job's outcome.

    Args:
        jobs: objects with `id`, `duration` and `work_dir` (a `Job`), picklable; they are
            handed out longest-first. A repeated id is rendered once.
        run_job: import path of the job function, `function(job, device, events)`.
        devices: from `parse_devices`.
        retries: how many times a job is retried after its worker process died.
        on_event: called in this process for every `PoolEvent`.
        lease_timeout_s: heartbeat age after which another process's lease counts as stale.
        held_retry_s: how long to wait before trying again a job another process holds.
        wait_for_held: wait for held jobs until their holder lets go (True), or report them
            as `held` once nothing else is left (False).
        needs: what each job's backend needs, "gpu" or "cpu", by job id (default: anything).
            A GPU job goes to a GPU worker, and to a CPU worker only when the pool has no GPU;
            a CPU job goes to a CPU worker, and to a GPU worker only when the pool has no CPU
            worker.
    """
    if not devices:
        raise UsageError("no devices to render on")
    check_job_function(run_job)
    scheduler = Scheduler(jobs, retries=retries, held_retry_s=held_retry_s, wait_for_held=wait_for_held,
                          on_event=on_event)  # fmt: skip
    pool = _Pool(
        scheduler,
        run_job=run_job,
        devices=devices,
        lease_timeout_s=lease_timeout_s,
        host=host if host is not None else socket.gethostname(),
        needs=needs or {},
    )
    # A batch scheduler stops a job with SIGTERM (Slurm preemption, Kubernetes pod deletion):
    # treat it like Ctrl-C, so workers stop and leases are given back before the SIGKILL.
    if threading.current_thread() is not threading.main_thread():
        return pool.run()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return pool.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --- the worker process -------------------------------------------------------------------------


def _worker_main(worker_id: int, device: Device, run_job: str, conn: Connection, parent_pid: int) -> None:
    # The pool process decides when to stop; a terminal's Ctrl-C reaches it, and it stops us
    # with SIGTERM, raised here as KeyboardInterrupt so the render loop keeps what is whole
    # (the chunk whose encoder is finishing) and stops its ffmpeg children before we exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _worker_loop(device, run_job, conn, parent_pid)
    except KeyboardInterrupt:
        # Then die of the signal as before, so the pool reports (and, for a job, retries) a
        # worker stopped by SIGTERM, whoever sent it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_loop(device: Device, run_job: str, conn: Connection, parent_pid: int) -> None:
    os.environ.update(device.env)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            conn.send(message)

    try:
        function = resolve_job_function(run_job)
    except BaseException as exc:  # reported to the pool, which stops
        send(("fatal", f"cannot import {run_job}: {type(exc).__name__}: {exc}"))
        return
    send(("ready", os.getpid()))
    while True:
        try:
            handed = conn.recv()
        except (EOFError, OSError):
            return
        if handed is None:
            return
        job, token = handed  # the job and the token of the lease the pool claimed for it
        start = time.monotonic()
        try:
            with rendering_under(job.work_dir, token):
                value = function(job, device, JobEvents(send, job.id))
        except EmoError as exc:
            cause = getattr(exc, "cause", exc)
            if isinstance(cause, ProcessKilled):  # as if this worker had died
                send(("killed", job.id, str(cause)))
                continue
            if isinstance(cause, LeaseLost):  # another render took the job over: it is held
                send(("lost", job.id, cause.holder))
                continue
            send(("failed", job.id, str(exc), None, time.monotonic() - start))
        except Exception as exc:  # a bug in the job function: keep its traceback
            message = f"{type(exc).__name__}: {exc}"
            send(("failed", job.id, message, traceback.format_exc(), time.monotonic() - start))
        else:
            try:
                send(("done", job.id, value, time.monotonic() - start))
            except Exception:  # the return value does not pickle: the job still succeeded
                send(("done", job.id, None, time.monotonic() - start))


def _exit_with_parent(parent_pid: int) -> None:
    """A worker outliving its pool would render without a lease: leave when the pool is gone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(3)


# --- the pool process ---------------------------------------------------------------------------


@dataclass
class _Worker:
    id: int
    device: Device
    process: Any = None  # multiprocessing.Process (spawn context)
    conn: Connection | None = None
    ready: bool = False
    eof: bool = False  # its end of the pipe is closed: the process is exiting
    job: Schedulable | None = None
    idle_deaths: int = 0


class _Fatal(Exception):
    pass


class _Pool:
    def __init__(self, scheduler: Scheduler, *, run_job: str, devices: Sequence[Device], lease_timeout_s: float,
                 host: str, needs: Mapping[str, str]):  # fmt: skip
        self.scheduler = scheduler
        self.run_job = run_job
        self.lease_timeout_s = lease_timeout_s
        self.host = host
        self.needs = needs
        self.ctx = mp.get_context("spawn")
        self.workers = [_Worker(id=i, device=d) for i, d in enumerate(devices)]
        self.kinds = {d.kind for d in devices}
        self.leases: dict[str, JobLease] = {}

    # -- main loop --

    def run(self) -> PoolSummary:
        fatal: str | None = None
        interrupted = False
        try:
            for worker in self.workers:
                self._start(worker)
            while not self._finished():
                self._dispatch()
                if self._finished():
                    break
                self._wait_and_handle()
        except KeyboardInterrupt:
            interrupted = True
        except _Fatal as exc:
            fatal = str(exc)
        finally:
            self._stop_workers(force=interrupted or fatal is not None)
            for lease in self.leases.values():
                lease.release()
            self.leases.clear()
        if fatal is not None:
            raise RenderError(fatal)
        return self.scheduler.close(interrupted=interrupted)

    def _finished(self) -> bool:
        return self.scheduler.finished(running=sum(w.job is not None for w in self.workers))

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not worker.ready or worker.job is not None:
                continue
            job = self.scheduler.next_job(claim=self._claim, fits=lambda job, w=worker: self._fits(w, job))
            if job is not None:
                self._hand_out(worker, job)

    def _fits(self, worker: _Worker, job: Schedulable) -> bool:
        """A job runs on the kind of device its backend needs when the pool has one (see `run_pool`)."""
        need = {"gpu": "cuda", "cpu": "cpu"}.get(self.needs.get(job.id, ""))
        return need is None or need == worker.device.kind or need not in self.kinds

    def _claim(self, job: Schedulable) -> str | None:
        lease = JobLease.claim(job.work_dir, host=self.host, pid=os.getpid(), timeout_s=self.lease_timeout_s)
        if lease is None:
            info = read_lease(job.work_dir)
            return info.holder if info is not None else "another process"
        self.leases[job.id] = lease
        return None

    def _hand_out(self, worker: _Worker, job: Schedulable) -> None:
        assert worker.conn is not None
        attempt = self.scheduler.hand_out(job)
        worker.job = job
        worker.conn.send((job, self.leases[job.id].info.token))
        self.scheduler.emit("started", job.id, worker.id, worker.device.name, attempt=attempt)

    def _wait_and_handle(self) -> None:
        timeout = self.scheduler.seconds_to_next_held(1.0)
        waitables: list[Any] = []
        for worker in self.workers:
            waitables.append(worker.process.sentinel)
            if not worker.eof:
                waitables.append(worker.conn)
        wait(waitables, timeout)
        for worker in self.workers:
            self._drain(worker)
            if not worker.process.is_alive():
                self._drain(worker)
                self._on_death(worker)

    def _drain(self, worker: _Worker) -> None:
        assert worker.conn is not None
        while True:
            try:
                if worker.eof or not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                worker.eof = True
                return
            self._on_message(worker, message)

    # -- messages from workers --

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self.scheduler.emit("worker_ready", None, worker.id, worker.device.name, pid=message[1])
        elif kind == "fatal":
            raise _Fatal(f"the worker for {worker.device} could not start: {message[1]}")
        elif kind == "event":
            _, job_id, event_kind, data = message
            self.scheduler.emit(event_kind, job_id, worker.id, worker.device.name, **data)
        elif kind == "done":
            _, job_id, value, seconds = message
            self._finish(worker, JobOutcome(job_id, DONE, value=value, seconds=seconds))
        elif kind == "failed":
            _, job_id, text, trace, seconds = message
            self._finish(worker, JobOutcome(job_id, FAILED, text, seconds=seconds, traceback=trace))
        elif kind == "lost":  # the lease was taken over while this pool was stalled
            job, worker.job = worker.job, None
            if job is not None:
                self.leases.pop(job.id, None)  # not ours any more: nothing to give back
                self.scheduler.hold(job, message[2], handed_out=True)
        elif kind == "killed":  # a child of the worker was killed (out of memory?): retry like a death
            job, worker.job = worker.job, None
            if job is not None and not self.scheduler.worker_died(job, message[2], worker.id, worker.device.name):
                self._release(job.id)

    def _finish(self, worker: _Worker, outcome: JobOutcome) -> None:
        worker.job = None
        self._release(outcome.job_id)
        self.scheduler.finish(outcome, worker.id, worker.device.name)

    def _release(self, job_id: str) -> None:
        lease = self.leases.pop(job_id, None)
        if lease is not None:
            lease.release()

    def _on_death(self, worker: _Worker) -> None:
        cause = _describe_exit(worker.process.exitcode)
        job = worker.job
        worker.job = None
        worker.ready = False
        self.scheduler.emit("worker_died", job.id if job else None, worker.id, worker.device.name, cause=cause)
        if job is None:
            worker.idle_deaths += 1
            if worker.idle_deaths > self.scheduler.retries + 1:
                raise _Fatal(f"the worker for {worker.device} keeps dying without a job ({cause})")
        self._start(worker)
        # A job to retry keeps its lease; one given up on gives it back.
        if job is not None and not self.scheduler.worker_died(job, cause, worker.id, worker.device.name):
            self._release(job.id)

    # -- worker processes --

    def _start(self, worker: _Worker) -> None:
        if worker.conn is not None:
            worker.conn.close()
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        process = self.ctx.Process(
            target=_worker_main,
            args=(worker.id, worker.device, self.run_job, child_conn, os.getpid()),
            name=f"emo-worker-{worker.device.name}",
            daemon=True,
        )
        # The child's environment is copied from ours when it starts: set the device's there,
        # so CUDA_VISIBLE_DEVICES is in place before the child imports anything.
        with _ENV_LOCK:
            saved = {key: os.environ.get(key) for key in worker.device.env}
            os.environ.update(worker.device.env)
            try:
                process.start()
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        child_conn.close()
        worker.process = process
        worker.conn = parent_conn
        worker.ready = False
        worker.eof = False

    def _stop_workers(self, *, force: bool) -> None:
        live = [w for w in self.workers if w.process is not None]
        for worker in live:
            if force or worker.job is not None:
                with contextlib.suppress(OSError, ValueError):
                    worker.process.terminate()
            else:
                with contextlib.suppress(OSError, ValueError, BrokenPipeError):
                    worker.conn.send(None)
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in live:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.job = None
            if worker.conn is not None:
                worker.conn.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
