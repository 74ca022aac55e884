"""How render throughput scales with workers: jobs per minute for 1 and 2 workers, locally and on Ray.

By default it renders a batch of real jobs (the demo portrait with the committed speech clips,
one seed per job, so every job has its own id) on the CPU `warp` backend, through the same
`render()` that `emo render` calls, into a fresh output dir per run:

    python benchmarks/scaling.py                        # 8 jobs; cpu:1 vs cpu:2, then Ray with 1 and 2 CPUs
    python benchmarks/scaling.py --jobs 16 --devices cpu:1 cpu:2 cuda:0,1 --no-ray
    python benchmarks/scaling.py --manifest my.yaml     # a manifest's own jobs instead

`--synthetic` times the pool itself on fixed CPU-bound work per job (worker start-up, hand-out
overhead, core contention), without rendering. Never run as a test.
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

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "manifests" / "assets"


def batch_manifest(folder: Path, count: int, backend: str) -> Path:
    """A manifest of `count` jobs: the demo portrait with each committed clip, a seed per job."""
    clips = sorted(p.name for p in ASSETS.glob("hello_*.wav"))
    shutil.copy(ASSETS / "astronaut.jpg", folder / "astronaut.jpg")
    for clip in clips:
        shutil.copy(ASSETS / clip, folder / clip)
    audio = "\n".join(f"  {Path(c).stem}: {c}" for c in clips)
    jobs = "\n".join(
        f"  - {{portrait: astronaut, audio: {Path(clips[i % len(clips)]).stem}, settings: {{seed: {i}}},"
        f" output: 'job{i:02d}.mp4'}}"
        for i in range(count)
    )
    manifest = folder / "batch.yaml"
    manifest.write_text(
        "version: 1\noutput_dir: out\n"
        f"defaults: {{backend: {backend}, fps: 25, resolution: 512, chunk_frames: 50}}\n"
        f"portraits:\n  astronaut: astronaut.jpg\naudio:\n{audio}\njobs:\n{jobs}\n"
    )
    return manifest


def fresh_plan(manifest: Path, output_dir: Path) -> Any:
    """The manifest's plan, redirected to `output_dir` so each run starts from nothing."""
    from emo_cli.manifest import load_manifest
    from emo_cli.planning import make_plan

    plan = make_plan(load_manifest(manifest))
    jobs = tuple(
        dataclasses.replace(job, output_dir=output_dir, output=output_dir / job.output.relative_to(job.output_dir))
        for job in plan.jobs
    )
    return dataclasses.replace(plan, output_dir=output_dir, jobs=jobs)


def time_render(plan: Any, **where: Any) -> tuple[float, float, int]:
    """(wall seconds, seconds until the first job started, frames) of rendering `plan`."""
    from emo_cli.execution import render

    first: list[float] = []
    start = time.perf_counter()

    def on_event(event: dict) -> None:
        if event["event"] == "job_started" and not first:
            first.append(time.perf_counter() - start)

    summary = render(plan, resume=False, events=on_event, **where)
    wall = time.perf_counter() - start
    bad = [r for r in summary.results if r.status not in ("done", "skipped")]
    if bad:
        raise SystemExit(f"{len(bad)} job(s) did not finish: {bad[0].status}: {bad[0].error}")
    return wall, first[0] if first else 0.0, sum(r.frames for r in summary.results)


def report(label: str, workers: int, jobs: int, wall: float, first: float, frames: int, baseline: float | None) -> float:
    rate = jobs / wall * 60
    ratio = rate / baseline if baseline else 1.0
    print(f"{label:<16} {workers:>7} {jobs:>5} {frames:>7} {wall:>8.2f} {first:>9.2f} {rate:>9.1f} {ratio:>7.2f}x")
    return rate


def real_runs(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="emo-scaling-"))
    try:
        manifest = args.manifest or batch_manifest(work, args.jobs, args.backend)
        print(f"{'executor':<16} {'workers':>7} {'jobs':>5} {'frames':>7} {'wall s':>8} {'1st job s':>9} "
              f"{'jobs/min':>9} {'ratio':>8}")  # fmt: skip
        baseline = None
        for spec in args.devices:
            from emo_cli.execution.devices import parse_devices
            from emo_cli.execution.executors import LocalPoolExecutor

            plan = fresh_plan(manifest, work / f"out-{spec.replace(':', '-').replace(',', '_')}")
            wall, first, frames = time_render(plan, executor=LocalPoolExecutor(devices=spec))
            rate = report(f"local {spec}", len(parse_devices(spec)), len(plan.jobs), wall, first, frames, baseline)
            baseline = baseline or rate
        if args.ray:
            import ray

            baseline = None
            for cpus in args.ray_cpus:
                plan = fresh_plan(manifest, work / f"out-ray-{cpus}")
                ray.init(num_cpus=cpus, num_gpus=0, _node_ip_address="127.0.0.1", include_dashboard=False,
                         log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # fmt: skip
                try:
                    wall, first, frames = time_render(plan, executor="ray")
                finally:
                    ray.shutdown()
                rate = report(f"ray {cpus} cpu", cpus, len(plan.jobs), wall, first, frames, baseline)
                baseline = baseline or rate
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


def synthetic_runs(args: argparse.Namespace) -> None:
    from emo_cli.execution.devices import parse_devices
    from emo_cli.execution.pool import PoolEvent, run_pool

    print(f"{'executor':<16} {'workers':>7} {'jobs':>5} {'frames':>7} {'wall s':>8} {'1st job s':>9} "
          f"{'jobs/min':>9} {'ratio':>8}")  # fmt: skip
    baseline = None
    for spec in args.devices:
        root = Path(tempfile.mkdtemp(prefix="emo-scaling-"))
        try:
            durations = [3.0 + (7 * i) % 10 for i in range(args.jobs)]  # 3-12 s clips, work follows
            jobs = [SyntheticJob(f"job{i:03d}", root / f"job{i:03d}", d, max(1, int(args.work * d / 7.5)))
                    for i, d in enumerate(durations)]  # fmt: skip
            first: list[float] = []
            start = time.perf_counter()

            def on_event(event: PoolEvent, first: list[float] = first, start: float = start) -> None:
                if event.kind == "started" and not first:
                    first.append(time.perf_counter() - start)

            summary = run_pool(jobs, "scaling:synthetic_job", parse_devices(spec), on_event=on_event)
            wall = time.perf_counter() - start
            if not summary.ok:
                raise SystemExit(f"{spec}: some jobs did not finish")
            rate = report(f"pool {spec}", len(parse_devices(spec)), len(jobs), wall, first[0], 0, baseline)
            baseline = baseline or rate
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu:1", "cpu:2"], help="--devices values to compare")
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the batch")
    parser.add_argument("--backend", default="warp", help="backend of the generated batch")
    parser.add_argument("--manifest", type=Path, help="render this manifest's jobs instead of the batch")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray runs")
    parser.add_argument("--ray-cpus", type=int, nargs="+", default=[1, 2], help="CPUs of the local Ray runs")
    parser.add_argument("--synthetic", action="store_true", help="time the pool on synthetic work instead")
    parser.add_argument("--work", type=int, default=40, help="synthetic work per 7.5 s of audio")
    args = parser.parse_args()
    if args.synthetic:
        synthetic_runs(args)
    else:
        real_runs(args)


if __name__ == "__main__":
    main()
