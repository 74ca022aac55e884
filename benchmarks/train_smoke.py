"""A 64 px smoke run of the README's training workflow on a CPU, with the figures it gives.

Runs, as subprocesses, exactly the README's commands: `emo dataset prepare` on footage of the
demo portrait rolling at known speeds with speech-like audio (several videos, one person each),
then `emo train stage1`, `emo train export`, `stage2`, `export`, `stage3`, `export`, and
`emo render` of the demo portrait and speech with the exported weights. The start weights are
the tiny test-sized model (the real diffusers/transformers classes at toy size, from
tests/backends/emo/tiny.py: no download). Prints each command's wall time, each stage's first
and last losses and median steps/s (from RUN/metrics.jsonl), and the rendered video's length.

This proves the workflow runs end to end; at this size and step count the model learns nothing
useful.

    python benchmarks/train_smoke.py [--steps 20] [--clip-frames 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "backends" / "emo"), str(REPO / "tests" / "training")]
PORTRAIT = REPO / "manifests" / "assets" / "astronaut.jpg"
SPEECH = REPO / "manifests" / "assets" / "hello_en.wav"

MANIFEST = """\
version: 1
output_dir: out
defaults:
  backend: emo
  fps: 25
  resolution: 64
  seed: 0
  emo: {{weights: {weights}, steps: 10, clip_frames: {clip_frames}}}
portraits: {{astro: {portrait}}}
audio: {{voice: {speech}}}
jobs:
  - {{portrait: astro, audio: voice}}
"""


def emo(*args: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    print("$ emo " + " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "emo_cli", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    print(f"  {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per stage")
    parser.add_argument("--clip-frames", type=int, default=4)
    parser.add_argument("--out", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()

    from synthetic import rotating_video
    from tiny import make_weights

    root = args.out or Path(tempfile.mkdtemp(prefix="emo-train-smoke-"))
    root.mkdir(parents=True, exist_ok=True)
    footage = root / "footage"
    footage.mkdir(exist_ok=True)
    for i, speed in enumerate((0.5, 1, 2, 3)):
        rotating_video(footage / f"person{i}.mp4", speed, frames=60, seed=i)
    weights = make_weights(root) if not (root / "weights").is_dir() else root / "weights"
    config = root / "train.yaml"
    config.write_text(f"steps: {args.steps}\nclip_frames: {args.clip_frames}\ncheckpoint_every: {args.steps}\n"
                      f"sample_every: {args.steps}\nsample_steps: 4\nlearning_rate: 1.0e-4\n")  # fmt: skip
    data = root / "data"
    times = {"prepare": emo("dataset", "prepare", str(footage), "--out", str(data), "--resolution", "64",
                            "--val-fraction", "0.25")}  # fmt: skip
    start = weights
    for stage in ("stage1", "stage2", "stage3"):
        run, out = root / "runs" / stage, root / "weights-trained" / stage
        shutil.rmtree(run, ignore_errors=True)
        times[stage] = emo("train", stage, "--config", str(config), "--data", str(data), "--weights", str(start),
                           "--out", str(run), "--json")  # fmt: skip
        times[f"export {stage}"] = emo("train", "export", str(run), "--out", str(out), "--force")
        start = out
    project = root / "project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir()
    manifest = project / "smoke.yaml"
    manifest.write_text(MANIFEST.format(weights=start, clip_frames=args.clip_frames, portrait=PORTRAIT,
                                        speech=SPEECH))  # fmt: skip
    times["render"] = emo("render", str(manifest))

    print(f"\n64 px smoke run, {args.steps} steps per stage, f = {args.clip_frames} (CPU, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')})")
    for stage in ("stage1", "stage2", "stage3"):
        rows = [json.loads(line) for line in (root / "runs" / stage / "metrics.jsonl").read_text().splitlines()]
        rate = statistics.median(r["steps_per_s"] for r in rows[1:] or rows)
        print(f"  {stage}: {times[stage]:6.1f} s wall, loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f} "
              f"(mean of the last 5: {statistics.mean(r['loss'] for r in rows[-5:]):.4f}), median {rate:.2f} steps/s, "
              f"export {times[f'export {stage}']:.1f} s")  # fmt: skip
    index = json.loads((start / "emo_weights.json").read_text())
    videos = sorted(p for p in (project / "out").rglob("*.mp4") if ".emo" not in p.parts)
    import av

    with av.open(str(videos[0])) as container:
        frames = sum(1 for _ in container.decode(video=0))
    print(f"  prepare {times['prepare']:.1f} s; render {times['render']:.1f} s: {videos[0].name}, {frames} frames")
    print(f"  exported weights: training record {json.dumps(index['training'])}")
    print(f"  everything is in {root}")


if __name__ == "__main__":
    main()
