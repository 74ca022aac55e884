"""Real-time factor of the `warp` backend through the whole pipeline: render, encode, mux.

Loops the committed English, French and Spanish clips into 60 s of speech, writes a temporary
manifest (astronaut portrait, 512x512, 25 fps, the demo's chunk size) and renders it with
`render_manifest`, the same code path as `emo render`. Prints the real-time factor (audio
seconds per wall-clock second) and where each frame's time went: the once-per-job analysis
(face mesh, rig, motion curves; in a fresh process also mediapipe's first import, about 1-2 s),
the warp itself, the H.264 segment encode and the final mux.

    python benchmarks/warp_speed.py [--seconds 60] [--resolution 512] [--chunk-frames 50] [--repeat 5]

The encoder is single-threaded by design (bit-exact segments); the warp renders the next two
chunks in a thread while the current one is encoded (`--render-ahead-chunks N` changes how
many, `--no-render-ahead` makes them take turns). On a loaded or shared machine the figures
are lower and vary from run to run: the script prints the load average it started with, and
`--repeat` runs it several times, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "manifests" / "assets"

MANIFEST = """\
version: 1
output_dir: out
output: "{{portrait}}/{{audio}}.mp4"
defaults: {{backend: warp, fps: 25, resolution: {resolution}, seed: 0, chunk_frames: {chunk_frames}, provenance: {{watermark: {watermark}}}, qc: {{enabled: false}}}}
portraits: {{astronaut: {portrait}}}
audio: {{speech: speech.wav}}
jobs:
  - {{portrait: astronaut, audio: speech}}
"""


def looped_speech(path: Path, seconds: float, rate: int = 16000) -> None:
    """The committed clips one after another, with short pauses, cut to `seconds`."""
    from emo_cli.media.audio import decode_audio

    clips = [decode_audio(ASSETS / f"hello_{lang}.wav", rate) for lang in ("en", "fr", "es")]
    pause = np.zeros(int(0.4 * rate), dtype=np.float32)
    pieces, total, i = [], 0, 0
    while total < seconds * rate:
        pieces += [clips[i % 3], pause]
        total += clips[i % 3].size + pause.size
        i += 1
    audio = np.concatenate(pieces)[: int(seconds * rate)]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children (the ffmpegs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def warp_renderer(seconds: float, folder: Path):
    """The `warp` renderer of a job that speaks `seconds` of the looped clips (written into
    `folder`): astronaut portrait, 512x512, 25 fps, default options. Returns (renderer, job)."""
    from emo_cli.backends.base import JobInput
    from emo_cli.backends.warp import WarpBackend
    from emo_cli.media.audio import decode_audio

    speech = folder / "speech.wav"
    looped_speech(speech, seconds)
    job = JobInput(job_id="0" * 16, portrait_path=ASSETS / "astronaut.jpg", audio=decode_audio(speech, 16000),
                   sample_rate=16000, fps=25, num_frames=int(np.ceil(seconds * 25)), seed=0, resolution=512,
                   options=WarpBackend.resolve_options({}))  # fmt: skip
    return WarpBackend().start_job(job), job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--chunk-frames", type=int, default=50)
    parser.add_argument("--no-render-ahead", action="store_true", help="render and encode take turns")
    parser.add_argument("--render-ahead-chunks", type=int, default=None, help="chunks rendered ahead (default: 2)")
    parser.add_argument("--no-watermark", action="store_true", help="turn the invisible watermark off")
    parser.add_argument("--repeat", type=int, default=1,
                        help="renders, each in a fresh process; prints every run, the best and the median")  # fmt: skip
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one run's figures, for --repeat
    args = parser.parse_args()
    if args.repeat > 1:
        argv = ["--seconds", str(args.seconds), "--resolution", str(args.resolution),
                "--chunk-frames", str(args.chunk_frames), "--json"]  # fmt: skip
        argv += ["--no-render-ahead"] * args.no_render_ahead + ["--no-watermark"] * args.no_watermark
        if args.render_ahead_chunks is not None:
            argv += ["--render-ahead-chunks", str(args.render_ahead_chunks)]
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            runs.append(json.loads(out.stdout))
            print(f"run {len(runs)}: {runs[-1]['factor']:.1f}x real time (load average {runs[-1]['load'][0]:.2f})")
        factors = sorted(run["factor"] for run in runs)
        print(f"best {factors[-1]:.1f}x, median {statistics.median(factors):.1f}x, worst {factors[0]:.1f}x "
              f"real time over {len(runs)} runs; the split of the median run:\n")  # fmt: skip
        report(args, sorted(runs, key=lambda run: run["factor"])[len(runs) // 2])
        return 0
    run = measure(args)
    if args.json:
        print(json.dumps(run))
    else:
        report(args, run)
    return 0


def measure(args: argparse.Namespace) -> dict:
    """One render in this process: wall time, the stage timings, CPU of this process and ffmpeg."""
    from emo_cli.api import render_manifest
    from emo_cli.backends.warp import WarpBackend, WarpRenderer
    from emo_cli.execution import chunkloop, publish

    WarpRenderer.render_ahead = not args.no_render_ahead
    if args.render_ahead_chunks is not None:
        WarpRenderer.render_ahead_chunks = args.render_ahead_chunks
    timings = {"decode audio": 0.0, "analysis": 0.0, "warp (waited for)": 0.0, "encode (convert, mark, pipe)": 0.0,
               "encode (wait for ffmpeg)": 0.0, "mux": 0.0}  # fmt: skip
    warp_total = [0.0, 0.0]  # every frame's warp (wall, CPU), including chunks rendered ahead
    def timed(name, fn):
        def wrapper(*a, **kw):
            began = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                timings[name] += time.perf_counter() - began

        return wrapper

    # Time the stages where the render loop calls them; the library itself is unchanged.
    chunkloop.decode_audio = timed("decode audio", chunkloop.decode_audio)
    chunkloop.SegmentEncoder.feed = timed("encode (convert, mark, pipe)", chunkloop.SegmentEncoder.feed)
    chunkloop.SegmentEncoder.finish = timed("encode (wait for ffmpeg)", chunkloop.SegmentEncoder.finish)
    publish.mux = timed("mux", publish.mux)
    start_job = WarpBackend.start_job

    def start_job_timed(self, job):
        began = time.perf_counter()
        renderer = start_job(self, job)
        timings["analysis"] += time.perf_counter() - began
        renderer.render_chunk = timed("warp (waited for)", renderer.render_chunk)
        render = renderer._render

        def render_timed(start, count):
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return render(start, count)
            finally:
                warp_total[0] += time.perf_counter() - began
                warp_total[1] += time.thread_time() - cpu

        renderer._render = render_timed
        return renderer

    WarpBackend.start_job = start_job_timed

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emo-warp-bench-") as tmp:
        folder = Path(tmp)
        looped_speech(folder / "speech.wav", args.seconds)
        manifest = folder / "bench.yaml"
        manifest.write_text(MANIFEST.format(resolution=args.resolution, chunk_frames=args.chunk_frames,
                                            portrait=ASSETS / "astronaut.jpg",
                                            watermark="false" if args.no_watermark else "true"))  # fmt: skip
        cpu_before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        began = time.perf_counter()
        summary = render_manifest(manifest, resume=False)
        wall = time.perf_counter() - began
        cpu_after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        (result,) = summary.results
        if result.status != "done":
            raise SystemExit(f"render failed: {result.error}")
        frames = result.frames

    own, children = (
        (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    return {"wall": wall, "factor": args.seconds / wall, "frames": frames, "load": load, "timings": timings,
            "warp_wall": warp_total[0], "warp_cpu": warp_total[1], "cpu_own": own, "cpu_ffmpeg": children}  # fmt: skip


def report(args: argparse.Namespace, run: dict) -> None:
    frames, wall, timings, load = run["frames"], run["wall"], run["timings"], run["load"]
    print(f"warp backend: {args.seconds:.0f} s of speech, {args.resolution}x{args.resolution}, 25 fps, "
          f"chunks of {args.chunk_frames} frames, {frames} frames")  # fmt: skip
    print(f"cpus: {os.cpu_count()}, load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"wall: {wall:.2f} s   real-time factor: {args.seconds / wall:.1f}x")
    other = wall - sum(timings.values())
    print("per frame (ms):")
    for name, seconds in [*timings.items(), ("other (plan, journal, checks)", other)]:
        print(f"  {name:<36}{1000 * seconds / frames:8.2f}")
    print(f"  {'warp, all frames (overlaps encode)':<36}{1000 * run['warp_wall'] / frames:8.2f}"
          f"   ({1000 * run['warp_cpu'] / frames:.2f} of CPU)")  # fmt: skip
    render_only = timings["analysis"] + run["warp_wall"]
    print(f"backend alone (analysis + warp of all frames): {args.seconds / render_only:.1f}x real time")
    # CPU seconds do not grow when other processes share the cores, so they show what two
    # otherwise idle cores could do: (own + ffmpeg) / 2 is the best possible wall time.
    own, children = run["cpu_own"], run["cpu_ffmpeg"]
    print(f"cpu: this process {own:.1f} s, ffmpeg (encode, mux) {children:.1f} s; "
          f"on 2 idle cores at best {args.seconds / ((own + children) / 2):.1f}x real time")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
