"""The local device pool: one long-lived worker process per device, jobs handed out longest-first.

Each worker is started with the 'spawn' method and its device's environment (a GPU worker
sees only its GPU through CUDA_VISIBLE_DEVICES) before anything can import CUDA. It imports
the job function once and renders job after job, so whatever that function caches per
process (a backend with its weights) is loaded once per device, not once per job.

The pool process owns the bookkeeping:
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
  returns a summary in which every unfinished job is `interrupted`.

The job function is named by import path, "package.module:function", and is called as
`function(job, device, events)` in the worker. It must be idempotent: a job another process
finished while this one waited for its lease is handed out again and should return at once
(the render loop does, from its journal).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import re
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from emo_cli.errors import EmoError, RenderError, UsageError
from emo_cli.execution.devices import Device
from emo_cli.execution.lease import DEFAULT_TIMEOUT_S, JobLease, read_lease
from emo_cli.execution.shards import Schedulable, longest_first

DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"
HELD = "held"

_RUN_JOB_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_ENV_LOCK = threading.Lock()
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class PoolEvent:
    """Something that happened in the pool, for a live display or a log.

    kind is one of: worker_ready, started, progress (data: done, total and whatever the job
    function adds), done, failed, retrying, held (data: holder), worker_died,
    interrupted, or any kind a job function emits itself.
    """

    kind: str
    job_id: str | None
    worker: int | None
    device: str | None
    data: dict[str, Any]
    time: float  # time.time() in the pool process


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
    """Given to the job function: reports progress back to the pool process."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None], job_id: str):
        self._send = send
        self.job_id = job_id

    def progress(self, done: int, total: int, **info: Any) -> None:
        """`done` of `total` units (chunks, frames) finished; extra keys ride along."""
        self.emit("progress", done=done, total=total, **info)

    def emit(self, kind: str, **data: Any) -> None:
        self._send(("event", self.job_id, kind, data))


def resolve_job_function(path: str) -> Callable[..., Any]:
    """Import "package.module:function"."""
    if not _RUN_JOB_PATTERN.fullmatch(path):
        raise UsageError(f"job function {path!r}: expected an import path such as package.module:function")
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"job function {path!r}: module {module_name} has no {attr}") from None


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
    """
    if not devices:
        raise UsageError("no devices to render on")
    if retries < 0:
        raise UsageError(f"--retries {retries}: must be 0 or more")
    if not _RUN_JOB_PATTERN.fullmatch(run_job):
        raise UsageError(f"job function {run_job!r}: expected an import path such as package.module:function")
    pool = _Pool(
        jobs=jobs,
        run_job=run_job,
        devices=devices,
        retries=retries,
        on_event=on_event,
        lease_timeout_s=lease_timeout_s,
        held_retry_s=held_retry_s,
        wait_for_held=wait_for_held,
        host=host if host is not None else socket.gethostname(),
    )
    # A batch scheduler stops a job with SIGTERM (Slurm preemption, Kubernetes pod deletion):
    # treat it like Ctrl-C, so workers stop and leases are given back before the SIGKILL.
    if threading.current_thread() is not threading.main_thread():
        return pool.run()
    previous = signal.signal(signal.SIGTERM, _interrupt)
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
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        start = time.monotonic()
        try:
            value = function(job, device, JobEvents(send, job.id))
        except EmoError as exc:
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
    def __init__(
        self,
        *,
        jobs: Iterable[Schedulable],
        run_job: str,
        devices: Sequence[Device],
        retries: int,
        on_event: Callable[[PoolEvent], None] | None,
        lease_timeout_s: float,
        held_retry_s: float,
        wait_for_held: bool,
        host: str,
    ):
        unique: dict[str, Schedulable] = {}
        for job in jobs:
            unique.setdefault(job.id, job)
        self.jobs = unique
        self.run_job = run_job
        self.retries = retries
        self.on_event = on_event
        self.lease_timeout_s = lease_timeout_s
        self.held_retry_s = held_retry_s
        self.wait_for_held = wait_for_held
        self.host = host
        self.ctx = mp.get_context("spawn")
        self.workers = [_Worker(id=i, device=d) for i, d in enumerate(devices)]
        self.pending: deque[Schedulable] = deque(longest_first(unique.values()))
        self.retry_first: deque[Schedulable] = deque()  # jobs whose worker died, lease kept
        self.held: list[tuple[float, Schedulable]] = []  # (when to try again, job)
        self.holders: dict[str, str] = {}
        self.leases: dict[str, JobLease] = {}
        self.attempts: dict[str, int] = {}
        self.summary = PoolSummary()

    # -- main loop --

    def run(self) -> PoolSummary:
        fatal: str | None = None
        try:
            for worker in self.workers:
                self._start(worker)
            while not self._finished():
                self._dispatch()
                if self._finished():
                    break
                self._wait_and_handle()
        except KeyboardInterrupt:
            self.summary.interrupted = True
        except _Fatal as exc:
            fatal = str(exc)
        finally:
            self._stop_workers(force=self.summary.interrupted or fatal is not None)
            for lease in self.leases.values():
                lease.release()
            self.leases.clear()
        if fatal is not None:
            raise RenderError(fatal)
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

    def _finished(self) -> bool:
        if self.pending or self.retry_first or any(w.job is not None for w in self.workers):
            return False
        return not self.held or not self.wait_for_held

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not worker.ready or worker.job is not None:
                continue
            job = self._next_job()
            if job is None:
                return
            self._hand_out(worker, job)

    def _next_job(self) -> Schedulable | None:
        if self.retry_first:
            return self.retry_first.popleft()
        now = time.monotonic()
        due = [job for when, job in self.held if when <= now]
        self.held = [(when, job) for when, job in self.held if when > now]
        candidates = due + list(self.pending)
        self.pending.clear()
        chosen: Schedulable | None = None
        for index, job in enumerate(candidates):
            lease = JobLease.acquire(
                job.work_dir, host=self.host, pid=os.getpid(), timeout_s=self.lease_timeout_s
            )
            if lease is None:
                info = read_lease(job.work_dir)
                holder = info.holder if info is not None else "another process"
                self.holders[job.id] = holder
                self.held.append((now + self.held_retry_s, job))
                self._emit(HELD, job.id, None, holder=holder)
                continue
            self.holders.pop(job.id, None)
            self.leases[job.id] = lease
            chosen = job
            self.pending.extend(candidates[index + 1 :])
            break
        # Held jobs that came due keep their longest-first place among those still pending.
        self.pending = deque(longest_first(self.pending))
        return chosen

    def _hand_out(self, worker: _Worker, job: Schedulable) -> None:
        assert worker.conn is not None
        self.attempts[job.id] = self.attempts.get(job.id, 0) + 1
        worker.job = job
        worker.conn.send(job)
        self._emit("started", job.id, worker, attempt=self.attempts[job.id])

    def _wait_and_handle(self) -> None:
        timeout = 1.0
        if self.held and not self.pending and not self.retry_first:
            next_try = min(when for when, _ in self.held) - time.monotonic()
            timeout = max(0.0, min(timeout, next_try))
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
            self._emit("worker_ready", None, worker, pid=message[1])
        elif kind == "fatal":
            raise _Fatal(f"the worker for {worker.device} could not start: {message[1]}")
        elif kind == "event":
            _, job_id, event_kind, data = message
            self._emit(event_kind, job_id, worker, **data)
        elif kind == "done":
            _, job_id, value, seconds = message
            self._finish(worker, JobOutcome(job_id, DONE, value=value, seconds=seconds))
        elif kind == "failed":
            _, job_id, text, trace, seconds = message
            self._finish(worker, JobOutcome(job_id, FAILED, text, seconds=seconds, traceback=trace))

    def _finish(self, worker: _Worker, outcome: JobOutcome) -> None:
        outcome.attempts = self.attempts.get(outcome.job_id, 0)
        outcome.worker = worker.id
        outcome.device = worker.device.name
        worker.job = None
        lease = self.leases.pop(outcome.job_id, None)
        if lease is not None:
            lease.release()
        self.summary.outcomes[outcome.job_id] = outcome
        data: dict[str, Any] = {"seconds": outcome.seconds}
        if outcome.status == FAILED:
            data["message"] = outcome.message
        self._emit(outcome.status, outcome.job_id, worker, **data)

    def _on_death(self, worker: _Worker) -> None:
        code = worker.process.exitcode
        cause = _describe_exit(code)
        job = worker.job
        worker.job = None
        worker.ready = False
        self._emit("worker_died", job.id if job else None, worker, cause=cause)
        if job is None:
            worker.idle_deaths += 1
            if worker.idle_deaths > self.retries + 1:
                raise _Fatal(f"the worker for {worker.device} keeps dying without a job ({cause})")
        self._start(worker)
        if job is None:
            return
        attempts = self.attempts.get(job.id, 0)
        if attempts <= self.retries:
            self.retry_first.append(job)
            self._emit("retrying", job.id, worker, cause=cause, attempt=attempts + 1)
            return
        lease = self.leases.pop(job.id, None)
        if lease is not None:
            lease.release()
        message = f"the worker process died ({cause}); gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
        self.summary.outcomes[job.id] = JobOutcome(
            job.id, FAILED, message, attempts=attempts, worker=worker.id, device=worker.device.name
        )
        self._emit(FAILED, job.id, worker, message=message)

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

    def _emit(self, kind: str, job_id: str | None, worker: _Worker | None, **data: Any) -> None:
        if self.on_event is None:
            return
        self.on_event(
            PoolEvent(
                kind=kind,
                job_id=job_id,
                worker=worker.id if worker else None,
                device=worker.device.name if worker else None,
                data=data,
                time=time.time(),
            )
        )


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
