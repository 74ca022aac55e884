"""Peak memory and per-frame overhead of the render pipeline, short audio vs long audio.

Renders a 10 s and a 10 min speech-like WAV with the cheap `testbars` backend (tests/plugins)
through `render_job` (decode, chunk render, segment encode, checkpoint + journal, mux), each in
its own process, and prints each process's peak RSS, their ratio (the pipeline streams frames
chunk by chunk, so the long render should stay within 1.2x of the short one), and the
pipeline's own time per frame split into decode, encode, journal and mux (ffmpeg itself runs
in child processes; their memory is not part of these figures).

    python benchmarks/pipeline_memory.py [--resolution 256] [--chunk-frames 50]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DURATIONS = {"short (10 s)": 10.0, "long (10 min)": 600.0}


def write_speechlike_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    """A gliding pitch with syllable-rate loudness and a little noise, written in 10 s blocks."""
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        total = int(seconds * rate)
        for begin in range(0, total, 10 * rate):
            t = np.arange(begin, min(total, begin + 10 * rate)) / rate
            phase = 2 * np.pi * (140 * t - 40 / (2 * np.pi * 0.7) * np.cos(2 * np.pi * 0.7 * t))
            signal = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2) * np.sin(phase) * 0.5
            signal += rng.normal(0, 0.02, t.size)
            out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())


def worker(wav: Path, output_dir: Path, resolution: int, chunk_frames: int, sign: bool = True) -> dict:
    """Render one job in this process and report peak RSS and where the time went."""
    sys.path[:0] = [str(REPO), str(REPO / "tests" / "plugins")]
    from emo_cli.backends import get_backend_class
    from emo_cli.execution import chunkloop, publish
    from emo_cli.execution.jobs import render_job
    from emo_cli.execution.workdir import WorkDir
    from emo_cli.fsutil import sha256_file
    from emo_cli.media.audio import decode_audio
    from emo_cli.planning.job import Job, Settings, Source

    timings = {"decode": 0.0, "backend": 0.0, "encode": 0.0, "journal": 0.0, "mux": 0.0}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] += time.perf_counter() - began

        return wrapper

    # Time the pipeline's stages where render_job calls them (the library itself is unchanged).
    chunkloop.decode_audio = timed("decode", chunkloop.decode_audio)
    chunkloop.SegmentEncoder.feed = timed("encode", chunkloop.SegmentEncoder.feed)
    chunkloop.SegmentEncoder.finish = timed("encode", chunkloop.SegmentEncoder.finish)
    WorkDir.write_state = timed("journal", WorkDir.write_state)
    WorkDir.commit_chunk = timed("journal", WorkDir.commit_chunk)
    publish.mux = timed("mux", publish.mux)
    publish.write_sidecar = timed("mux", publish.write_sidecar)

    backend = get_backend_class("testbars")()
    start_job = backend.start_job

    def start_job_timed(job_input):
        renderer = start_job(job_input)
        renderer.render_chunk = timed("backend", renderer.render_chunk)
        return renderer

    backend.start_job = start_job_timed
    portrait = REPO / "manifests" / "assets" / "astronaut.jpg"
    settings = Settings("testbars", 25, resolution, 0, chunk_frames, {}, sign=sign)
    duration = len(decode_audio(wav, 16000)) / 16000
    job = Job(
        id=hashlib.sha256(f"{wav}{resolution}{chunk_frames}".encode()).hexdigest()[:16],
        name=wav.stem,
        portrait=Source("astronaut", portrait, sha256_file(portrait), "portraits.astronaut"),
        audio=Source(wav.stem, wav, sha256_file(wav), f"audio.{wav.stem}"),
        settings=settings,
        output=output_dir / f"{wav.stem}.mp4",
        output_dir=output_dir,
        manifest=output_dir / "bench.yaml",
        field="jobs[0]",
        duration=duration,
        backend_version="1.0",
        weights_identity="none",
    )
    began = time.perf_counter()
    render_job(job, backend)
    wall = time.perf_counter() - began
    return {
        "frames": job.num_frames,
        "wall_s": wall,
        "timings_s": timings,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "audio_mib": duration * backend.sample_rate * 4 / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--chunk-frames", type=int, default=50)
    parser.add_argument("--no-sign", action="store_true",
                        help="skip C2PA signing (c2pa-rs holds the whole MP4 in memory while it signs)")
    parser.add_argument("--worker", nargs=2, metavar=("WAV", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        wav, output_dir = map(Path, args.worker)
        print(json.dumps(worker(wav, output_dir, args.resolution, args.chunk_frames, sign=not args.no_sign)))
        return 0

    results = {}
    with tempfile.TemporaryDirectory(prefix="emo-bench-") as tmp:
        for label, seconds in DURATIONS.items():
            wav = Path(tmp) / f"speech_{int(seconds)}s.wav"
            write_speechlike_wav(wav, seconds)
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(wav), str(Path(tmp) / "out"),
                 "--resolution", str(args.resolution), "--chunk-frames", str(args.chunk_frames),
                 *(["--no-sign"] if args.no_sign else [])],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[label] = json.loads(proc.stdout.splitlines()[-1])

    print(f"testbars backend, {args.resolution}x{args.resolution}, 25 fps, chunks of {args.chunk_frames} frames")
    header = f"{'render':<15}{'frames':>8}{'wall s':>9}{'peak RSS MiB':>14}{'audio MiB':>11}"
    header += "".join(f"{name + ' ms/f':>16}" for name in ("decode", "encode", "journal", "mux", "backend"))
    print(header)
    for label, r in results.items():
        per_frame = {k: 1000 * v / r["frames"] for k, v in r["timings_s"].items()}
        row = f"{label:<15}{r['frames']:>8}{r['wall_s']:>9.1f}{r['peak_rss_mib']:>14.1f}{r['audio_mib']:>11.1f}"
        row += "".join(f"{per_frame[name]:>16.3f}" for name in ("decode", "encode", "journal", "mux", "backend"))
        print(row)
    short, long = (results[label]["peak_rss_mib"] for label in DURATIONS)
    ratio = long / short
    print(f"peak RSS long/short: {ratio:.2f}x (target <= 1.20x): {'ok' if ratio <= 1.2 else 'OVER TARGET'}")
    # The backend contract hands every backend the whole decoded track (JobInput.audio), so the
    # decoded audio is the one thing that must grow with duration; everything else streams.
    short_rest, long_rest = (results[label]["peak_rss_mib"] - results[label]["audio_mib"] for label in DURATIONS)
    print(f"peak RSS minus the decoded audio, long/short: {long_rest / short_rest:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
