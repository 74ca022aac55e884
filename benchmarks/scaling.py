"""How render throughput scales with local workers: prints jobs per minute per `--devices` value.

Without a manifest it times the pool itself on synthetic CPU-bound jobs (fixed work per job), so
the figures show worker start-up, hand-out overhead and core contention:

    python benchmarks/scaling.py --devices cpu:1 cpu:2 --jobs 16 --work 40

With a manifest it plans the real jobs and renders each with the job function given by
`--run-job` (the render loop's pool entry point), into a fresh output dir per `--devices` value:

    python benchmarks/scaling.py --manifest manifests/demo.yaml --run-job MODULE:FUNCTION \
        --devices cpu:1 cpu:2 cuda:0 cuda:0,1

Never run as a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SyntheticJob:
    id: str
    work_dir: Path
    duration: float
    work: int  # matrix products of 256x256


def synthetic_job(job: SyntheticJob, device: Any, events: Any) -> float:
    """CPU-bound work standing in for a render: `work` float32 products, progress after each."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256), dtype=np.float32)
    acc = np.eye(256, dtype=np.float32)
    for step in range(job.work):
        acc = np.tanh(acc @ a)
        events.progress(step + 1, job.work)
    return float(acc.sum())


def synthetic_jobs(root: Path, count: int, work: int) -> list[SyntheticJob]:
    # Durations vary like a studio batch (3-12 s clips); work follows duration.
    durations = [3.0 + (7 * i) % 10 for i in range(count)]
    return [
        SyntheticJob(
            id=f"job{i:03d}", work_dir=root / f"job{i:03d}", duration=d, work=max(1, int(work * d / 7.5))
        )
        for i, d in enumerate(durations)
    ]


def planned_jobs(manifest: Path, output_dir: Path) -> list[Any]:
    """The manifest's jobs, redirected to `output_dir` so each run starts from nothing."""
    from emo_cli.manifest import load_manifest
    from emo_cli.planning import make_plan

    plan = make_plan(load_manifest(manifest))
    jobs = []
    for job in plan.jobs:
        relative = job.output.relative_to(job.output_dir)
        jobs.append(dataclasses.replace(job, output_dir=output_dir, output=output_dir / relative))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices", nargs="+", default=["cpu:1", "cpu:2"], help="--devices values to compare"
    )
    parser.add_argument("--jobs", type=int, default=16, help="synthetic jobs per run")
    parser.add_argument("--work", type=int, default=40, help="synthetic work per 7.5 s of audio")
    parser.add_argument("--manifest", type=Path, help="render this manifest's jobs instead")
    parser.add_argument("--run-job", default="scaling:synthetic_job", help="job function, MODULE:FUNCTION")
    args = parser.parse_args()

    from emo_cli.execution.devices import parse_devices
    from emo_cli.execution.pool import PoolEvent, run_pool

    print(
        f"{'devices':<12} {'workers':>7} {'jobs':>5} {'wall s':>8} {'first start s':>13} {'jobs/min':>9} {'speed-up':>8}"
    )
    baseline: float | None = None
    for spec in args.devices:
        devices = parse_devices(spec)
        root = Path(tempfile.mkdtemp(prefix="emo-scaling-"))
        try:
            if args.manifest is not None:
                jobs: list[Any] = planned_jobs(args.manifest, root)
            else:
                jobs = synthetic_jobs(root, args.jobs, args.work)
            first_start: list[float] = []
            start = time.perf_counter()

            def on_event(
                event: PoolEvent, first_start: list[float] = first_start, start: float = start
            ) -> None:
                if event.kind == "started" and not first_start:
                    first_start.append(time.perf_counter() - start)

            summary = run_pool(jobs, args.run_job, devices, on_event=on_event)
            wall = time.perf_counter() - start
            if not summary.ok:
                bad = [o for o in summary.outcomes.values() if o.status != "done"]
                raise SystemExit(
                    f"{spec}: {len(bad)} job(s) did not finish: {bad[0].status}: {bad[0].message}"
                )
            rate = len(jobs) / wall * 60
            baseline = baseline or rate
            print(
                f"{spec:<12} {len(devices):>7} {len(jobs):>5} {wall:>8.2f} {first_start[0]:>13.2f} "
                f"{rate:>9.1f} {rate / baseline:>7.2f}x"
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
