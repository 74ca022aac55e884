"""Job functions for the pool and Ray tests: tiny, picklable, importable in a spawned worker.

`record` does what a render does to the file system, in miniature: it returns at once when
the job's output exists (the render loop's resume), else it appends the job id to a shared
log and writes the output atomically. `FakeJob.behaviour` makes it fail in chosen ways.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo_cli.errors import InputError
from emo_cli.fsutil import atomic_write_text

# What this worker saw when it imported the job function, before any job ran.
CUDA_AT_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class FakeJob:
    id: str
    work_dir: Path
    duration: float = 1.0
    log: Path | None = None
    behaviour: str = "ok"  # ok, input_error, bug, die_once, sigterm_once, interrupt, terminate, rendezvous
    rendezvous: Path | None = None  # for "rendezvous": a dir where the jobs that must overlap meet
    peers: int = 2
    meet_as: str = ""  # the name to meet under (default: the job id)


def output_of(job: FakeJob) -> Path:
    return job.work_dir / "output.json"


def record(job: FakeJob, device: Any, events: Any) -> dict[str, Any]:
    output = output_of(job)
    if output.exists():
        return {"skipped": True}
    if job.behaviour == "input_error":
        raise InputError(f"portraits.{job.id}: no face found in the portrait")
    if job.behaviour == "bug":
        raise ValueError("a bug in the job function")
    if job.behaviour in ("die_once", "sigterm_once"):
        marker = job.work_dir / "attempted"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL if job.behaviour == "die_once" else signal.SIGTERM)
            threading.Event().wait()  # the signal ends this worker
    if job.behaviour in ("interrupt", "terminate"):
        # as a terminal's Ctrl-C, or a batch scheduler's SIGTERM, reaches the pool
        os.kill(os.getppid(), signal.SIGINT if job.behaviour == "interrupt" else signal.SIGTERM)
        threading.Event().wait()  # until the pool stops this worker
    if job.behaviour == "rendezvous":
        _meet(job)
    events.progress(1, 2)
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    if job.log is not None:
        with open(job.log, "a", encoding="utf-8") as fh:  # one short O_APPEND write per job
            fh.write(f"{job.id} {os.getpid()} {cuda!r}\n")
    result = {"pid": os.getpid(), "cuda": cuda, "cuda_at_import": CUDA_AT_IMPORT, "device": str(device)}
    atomic_write_text(output, json.dumps(result))
    events.progress(2, 2)
    return result


def _meet(job: FakeJob) -> None:
    """Wait until `peers` jobs are running at once; fail (not hang) if they never are."""
    assert job.rendezvous is not None
    job.rendezvous.mkdir(parents=True, exist_ok=True)
    (job.rendezvous / (job.meet_as or job.id)).touch()
    deadline = time.monotonic() + 60
    while len(list(job.rendezvous.iterdir())) < job.peers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job.id}: the other jobs never started alongside this one")
        time.sleep(0.01)


def main(argv: list[str]) -> None:
    """Run one pool, named `name`, over `count` shared jobs (two of these run at once in a test).

    Each pool's first job waits for the other pool's first job, so the two pools really do
    render side by side and compete for the same jobs.
    """
    from emo_cli.execution.devices import parse_devices
    from emo_cli.execution.pool import run_pool

    shared, count, devices, name = Path(argv[0]), int(argv[1]), argv[2], argv[3]
    jobs = [
        FakeJob(
            id=f"job{i:02d}",
            work_dir=shared / f"job{i:02d}",
            duration=float(i % 5),
            log=shared / "log.txt",
            behaviour="rendezvous",
            rendezvous=shared / "meet",
            meet_as=name,
        )
        for i in range(count)
    ]
    summary = run_pool(jobs, "pool_jobs:record", parse_devices(devices), held_retry_s=0.05)
    ran = sorted(o.job_id for o in summary.outcomes.values() if o.value and not o.value.get("skipped"))
    statuses = {o.job_id: o.status for o in summary.outcomes.values()}
    print(json.dumps({"ran": ran, "statuses": statuses}))


if __name__ == "__main__":
    main(sys.argv[1:])
