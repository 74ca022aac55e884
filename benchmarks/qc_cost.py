"""What the quality gates cost: per frame in a render loop (a bounded sample per chunk), and
`emo qc` on a whole video, against the `warp` render's own CPU per frame.

Renders the looped committed speech (as benchmarks/warp_speed.py does: astronaut portrait,
512x512, 25 fps, chunks of 50) through `render_manifest` with the quality gates off, counting
the CPU of this process and of its ffmpegs; then:

- in the render loop: the same render again with `settings.qc` on (default sample of 3 frames
  per chunk, whole-video gates off), its extra CPU over the first one (noisy on a loaded
  machine: it is the difference of two renders);
- in-loop, call by call: `measure_chunk` on each chunk of the rendered video with a sample of
  N frames (the loudest, the quietest, the rest evenly spread), each measured frame against the
  portrait aligned to it (`aligned_portrait`, as the loop does), timed call by call (process
  CPU: MediaPipe runs its graph on threads of its own), plus the once-per-job setup (the
  portrait's face mesh, the track's loudness);
- `emo qc`: `measure_video` on the whole video in this process (wall and CPU), and the
  `emo qc --json` command in a fresh process (wall, with its imports).

    python benchmarks/qc_cost.py [--seconds 60] [--resolution 512] [--sample 2 3 4 8]

The target: in-loop QC at most 10% of warp's CPU per frame. Figures vary with the machine's
load (the load average at the start is printed); compare ratios printed by one run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from warp_speed import ASSETS, MANIFEST, looped_speech  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds() -> tuple[float, float]:
    """(this process, its finished children) CPU seconds, user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def render(folder: Path, seconds: float, resolution: int, chunk_frames: int,
           qc: bool = False) -> tuple[Path, Path, int, float, float]:  # fmt: skip
    """Render the benchmark job (quality gates off, or in the loop only with `qc`); returns
    (video, audio, frames, wall s, CPU s of the render)."""
    from emo_cli.execution import render_manifest

    folder.mkdir(exist_ok=True)
    if not (folder / "speech.wav").exists():
        looped_speech(folder / "speech.wav", seconds)
    manifest = folder / "bench.yaml"
    text = MANIFEST.format(resolution=resolution, chunk_frames=chunk_frames, portrait=ASSETS / "astronaut.jpg",
                           watermark="true")  # fmt: skip
    assert "qc: {enabled: false}" in text
    manifest.write_text(text.replace("qc: {enabled: false}", "qc: {enabled: true, video: false}") if qc else text)
    before = cpu_seconds()
    began = time.perf_counter()
    summary = render_manifest(manifest, resume=False)
    wall = time.perf_counter() - began
    after = cpu_seconds()
    (result,) = summary.results
    if result.status != "done":
        raise SystemExit(f"render failed: {result.error}")
    cpu = sum(a - b for a, b in zip(after, before, strict=True))
    return result.output, folder / "speech.wav", result.frames, wall, cpu


def chunks(video: Path, chunk_frames: int):
    """The video's frames, chunk by chunk, as (start, frames) with frames (n, h, w, 3) uint8."""
    import av

    with av.open(str(video)) as container:
        batch: list[np.ndarray] = []
        start = 0
        for frame in container.decode(video=0):
            batch.append(frame.to_ndarray(format="rgb24"))
            if len(batch) == chunk_frames:
                yield start, np.stack(batch)
                start += len(batch)
                batch = []
        if batch:
            yield start, np.stack(batch)


def in_loop(video: Path, audio: Path, chunk_frames: int, sample: int, count: int) -> dict:
    """CPU and wall of measure_chunk over every chunk of `video` with `sample` frames each."""
    from emo_cli.backends.face import face_mesh_landmarks
    from emo_cli.media.audio import decode_audio
    from emo_cli.media.image import load_portrait
    from emo_cli.quality import measure_chunk
    from emo_cli.quality.chunk import aligned_portrait
    from emo_cli.quality.measures import frame_loudness

    samples = decode_audio(audio, 16000)
    c0, w0 = time.process_time(), time.perf_counter()
    reference = aligned_portrait(load_portrait(ASSETS / "astronaut.jpg"), face_mesh_landmarks)
    loudness = frame_loudness(samples, 16000, 25, count)
    setup = (time.process_time() - c0, time.perf_counter() - w0)
    cpu = wall = 0.0
    frames_total = 0
    per_chunk = []
    for index, (start, frames) in enumerate(chunks(video, chunk_frames)):
        c0, w0 = time.process_time(), time.perf_counter()
        measure_chunk(frames, index=index, start=start, loudness=loudness[start:start + len(frames)],
                      reference=reference, sample=sample)  # fmt: skip
        c1, w1 = time.process_time(), time.perf_counter()
        cpu += c1 - c0
        wall += w1 - w0
        per_chunk.append(c1 - c0)
        frames_total += len(frames)
    return {"sample": sample, "frames": frames_total, "cpu": cpu, "wall": wall, "setup_cpu": setup[0],
            "chunk_cpu_median": statistics.median(per_chunk)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--chunk-frames", type=int, default=50)
    parser.add_argument("--sample", type=int, nargs="+", default=[2, 3, 4, 8], help="frames measured per chunk")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="emo-qc-bench-") as tmp:
        video, audio, frames, wall, cpu = render(Path(tmp), args.seconds, args.resolution, args.chunk_frames)
        warp_ms = cpu / frames * 1000
        print(f"warp render: {frames} frames of {args.resolution}x{args.resolution} in {wall:.1f} s; "
              f"CPU (this process + ffmpeg) {cpu:.1f} s = {warp_ms:.2f} ms per frame")
        print("\nin-loop QC (measure_chunk on a sample of each chunk of "
              f"{args.chunk_frames} frames; process CPU):")  # fmt: skip
        for sample in args.sample:
            run = in_loop(video, audio, args.chunk_frames, sample, frames)
            per_frame = run["cpu"] / run["frames"] * 1000
            print(f"  sample {sample:2d}/chunk: {per_frame:.3f} ms per frame = {per_frame / warp_ms:.1%} of warp's "
                  f"CPU per frame (median {run['chunk_cpu_median'] * 1000:.0f} ms per chunk; once per job: "
                  f"portrait mesh + loudness {run['setup_cpu'] * 1000:.0f} ms)")  # fmt: skip

        _, _, _, qc_wall, qc_cpu = render(Path(tmp) / "with_qc", args.seconds, args.resolution, args.chunk_frames,
                                          qc=True)  # fmt: skip
        extra = (qc_cpu - cpu) / frames * 1000
        print(f"\nthe render again with settings.qc on in the loop (sample 3, whole-video gates off): "
              f"CPU {qc_cpu:.1f} s, {extra:+.2f} ms per frame = {extra / warp_ms:+.1%} of warp's CPU per frame")  # fmt: skip

        from emo_cli.quality import measure_video

        c0, w0 = time.process_time(), time.perf_counter()
        report = measure_video(video, audio=audio, portrait=ASSETS / "astronaut.jpg")
        qc_cpu, qc_wall = time.process_time() - c0, time.perf_counter() - w0
        print(f"\nemo qc on the {args.seconds:g} s video (measure_video in this process, warm): wall {qc_wall:.1f} s, "
              f"CPU {qc_cpu:.1f} s = {qc_cpu / report.frames * 1000:.2f} ms per frame; verdict: "
              f"{'PASS' if report.passed else 'FAIL'}")  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "emo_cli", "qc", str(video), "--audio", str(audio), "--portrait",
                               str(ASSETS / "astronaut.jpg"), "--json"], capture_output=True, text=True, env=env)  # fmt: skip
        cold = time.perf_counter() - began
        print(f"emo qc --json in a fresh process: wall {cold:.1f} s (exit {proc.returncode})")
        if proc.returncode not in (0, 1):
            print(proc.stderr[-2000:])
            return 1
        if not report.passed:
            print("failed gates: " + "; ".join(g.name + ": " + (g.detail or g.value) for g in report.failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
