"""How long `emo validate`, `emo plan` and `emo status` take on large manifests (the library calls
they make, in this process): N portraits, each a small JPEG of its own, and one job per portrait.

    python benchmarks/scale_of_validation.py [--jobs 1000,10000] [--repeat 3]

validate = load_manifest + make_plan (what `emo validate` runs); plan = plan_manifest (what `emo
plan` runs before printing); status = plan_manifest + plan_status (journals read for every job).
The first validate of a size is timed apart from the rest: it meets a cold page cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(folder: Path, jobs: int) -> Path:
    """A manifest of `jobs` jobs, each with its own 64x64 portrait, all on one audio track."""
    import shutil

    from PIL import Image

    faces = folder / "faces"
    faces.mkdir()
    base = Image.open(REPO / "manifests" / "assets" / "astronaut.jpg").convert("RGB").resize((64, 64))
    for i in range(jobs):
        image = base.copy()
        image.putpixel((0, 0), (i % 256, (i // 256) % 256, 0))
        image.save(faces / f"p{i}.jpg", quality=90)
    shutil.copyfile(REPO / "manifests" / "assets" / "hello_en.wav", folder / "en.wav")
    lines = ["version: 1", "output_dir: renders", "defaults: {backend: warp}", "portraits:"]
    lines += [f"  p{i}: faces/p{i}.jpg" for i in range(jobs)]
    lines += ["audio: {en: en.wav}", "matrix:", "  portraits: [" + ", ".join(f"p{i}" for i in range(jobs)) + "]",
              "  audio: [en]"]  # fmt: skip
    path = folder / "manifest.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", default="1000,10000", help="manifest sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step (the median is printed)")
    args = parser.parse_args()
    from emo_cli.api import plan_manifest, validate_manifest
    from emo_cli.execution.status import plan_status

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{'jobs':>7} {'validate (first)':>17} {'validate':>9} {'plan':>9} {'status':>9}")
    for jobs in (int(n) for n in args.jobs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = build(Path(tmp), jobs)
            first = timed(lambda path=path: validate_manifest(path))
            problems = validate_manifest(path)
            if problems:
                print(f"unexpected problems: {problems[:3]}")
                return 1
            steps = {
                "validate": lambda path=path: validate_manifest(path),
                "plan": lambda path=path: plan_manifest(path),
                "status": lambda path=path: plan_status(plan_manifest(path)),
            }
            medians = {name: statistics.median(timed(step) for _ in range(args.repeat)) for name, step in steps.items()}
            print(f"{jobs:>7} {first:>16.2f}s {medians['validate']:>8.2f}s {medians['plan']:>8.2f}s "
                  f"{medians['status']:>8.2f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
