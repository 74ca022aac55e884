"""What provenance costs and how well the watermark survives.

Prints:
- the per-frame cost of watermarking at several resolutions: in the render loop (the U plane
  marked while it is converted for the encoder), emo-cli's RGB path, and for comparison
  invisible-watermark's own `EmbedDwtDctSvd.encode`;
- the time to C2PA-sign, and to read back and validate, a 60 s 512x512 MP4;
- the whole render loop's time per frame with the marks off and on;
- the payload's bit accuracy and the detection confidence after re-encoding the final video at
  CRF 18/23/28 and after a 0.5x downscale, for the bit layout emo-cli uses (2x2 block groups)
  and the library's (one block per bit), and the confidence read from an unmarked video.

The test frames are the demo portrait with a small moving patch (photographic content), marked
and encoded exactly as `emo render` does (the U plane marked as it is converted for the segment
encoder: CRF 18, veryfast); the library's layout is marked in RGB first.

    python benchmarks/provenance_cost.py [--seconds 4] [--frames 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PORTRAIT = REPO / "manifests" / "assets" / "astronaut.jpg"
JOB_ID = "8f4933490badf00d"


def portrait_frames(size: int, count: int) -> np.ndarray:
    import cv2

    base = cv2.cvtColor(cv2.resize(cv2.imread(str(PORTRAIT)), (size, size), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB)  # fmt: skip
    frames = np.repeat(base[None], count, axis=0)
    patch = size // 12
    for index in range(count):
        y = (size // 4 + 3 * index) % (size - patch)
        x = size // 2
        frames[index, y : y + patch, x : x + patch] = np.roll(
            base[y : y + patch, x : x + patch], index, axis=1
        )
    return frames


def library_encoder(bits: np.ndarray, scale: int):
    """invisible-watermark's dwtDctSvd class, loaded from its file (the package imports torch)."""
    spec = importlib.util.find_spec("imwatermark")
    path = Path(spec.submodule_search_locations[0]) / "dwtDctSvd.py"
    module_spec = importlib.util.spec_from_file_location("imwatermark_dwtdctsvd", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.EmbedDwtDctSvd(watermarks=list(bits), wmLen=len(bits), scales=[0, scale, 0])


def per_frame_cost(frames_per_size: int) -> None:
    import cv2

    from emo_cli.media.segment import rgb_to_yuv420p
    from emo_cli.provenance import watermark as wm

    print("watermark cost per frame (ms; median and fastest of the frames timed). The render loop marks")
    print("the U plane while converting for the encoder: its cost is that conversion with the mark")
    print("minus without; emo-cli's RGB path (mark_in_place, for library use) and the library's for scale:")
    for size in (256, 512, 1024):
        frames = portrait_frames(size, frames_per_size)
        marker = wm.FrameMarker.for_job(JOB_ID)
        planar = np.empty((size * 3 // 2, size), dtype=np.uint8)
        loop = {None: [], marker.mark_u_cells: []}
        for frame in frames:
            for mark_u, spent in loop.items():
                began = time.perf_counter()
                rgb_to_yuv420p(frame, planar, mark_u)
                spent.append((time.perf_counter() - began) * 1e3)
        in_loop = statistics.median(loop[marker.mark_u_cells]) - statistics.median(loop[None])
        times = []
        for frame in frames:
            work = frame.copy()
            began = time.perf_counter()
            marker.mark_in_place(work)
            times.append((time.perf_counter() - began) * 1e3)
        library = library_encoder(wm.payload_bits(JOB_ID), int(wm.SCALE))
        lib_times = []
        for frame in frames[:3]:
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            began = time.perf_counter()
            library.encode(bgr)
            lib_times.append((time.perf_counter() - began) * 1e3)
        print(f"  {size}x{size}: render loop {in_loop:5.2f}; RGB {statistics.median(times):6.2f} "
              f"(fastest {min(times):5.2f}) over {len(times)} frames; invisible-watermark "
              f"{statistics.median(lib_times):7.1f}")  # fmt: skip
    frames = wm.mark_frames(portrait_frames(512, 25), JOB_ID)
    began = time.perf_counter()
    found = wm.detect(frames)
    print(f"  detection, 512x512: {(time.perf_counter() - began) / 25 * 1e3:.2f} ms per frame "
          f"(at two scales), payload {found.job_id_prefix}")  # fmt: skip


def encode(frames: np.ndarray, path: Path, fps: int = 25, mark_u=None) -> None:
    from emo_cli.media.segment import encode_segment

    encode_segment(frames, path, fps=fps, gop=50, mark_u=mark_u)


def signing_time(folder: Path) -> None:
    from emo_cli.media.ffmpeg import run_ffmpeg
    from emo_cli.provenance.credentials import read_credentials, sign_video
    from emo_cli.provenance.identity import local_identity

    video = folder / "sixty.mp4"
    run_ffmpeg(["-loop", "1", "-i", str(PORTRAIT), "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=16000",
                "-t", "60", "-r", "25", "-vf", "scale=512:512", "-c:v", "libx264", "-preset", "ultrafast",
                "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(video)],
               what="encode", file=video)  # fmt: skip
    os.environ["EMO_CONFIG_DIR"] = str(folder / "config")
    began = time.perf_counter()
    identity = local_identity()
    created = time.perf_counter() - began
    manifest = {
        "claim_generator_info": [{"name": "emo-cli", "version": "benchmark"}],
        "title": "sixty.mp4",
        "format": "video/mp4",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created",
                        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}]}}],
    }  # fmt: skip
    times = []
    for _ in range(3):
        began = time.perf_counter()
        sign_video(video, folder / "signed.mp4", manifest, identity)
        times.append(time.perf_counter() - began)
    began = time.perf_counter()
    status = read_credentials(folder / "signed.mp4").status
    read = time.perf_counter() - began
    size = video.stat().st_size / 1e6
    print(f"C2PA signing, 60 s 512x512 MP4 ({size:.1f} MB): sign {statistics.median(times) * 1e3:.0f} ms "
          f"(median of 3), read + validate {read * 1e3:.0f} ms ({status}); "
          f"creating the local identity once {created * 1e3:.0f} ms")  # fmt: skip


def accuracy(folder: Path, seconds: float) -> None:
    import av

    from emo_cli.media.ffmpeg import run_ffmpeg
    from emo_cli.provenance import watermark as wm

    count = int(seconds * 25)
    frames = portrait_frames(512, count)
    want = wm.payload_bits(JOB_ID)

    def read(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

    print(
        f"payload bit accuracy / confidence ({count} frames of 512x512 portrait; exact = 48/48 and a valid check):"
    )
    copies = [
        ("final MP4 (CRF 18, as rendered)", None),
        ("re-encoded CRF 18", ["-crf", "18"]),
        ("re-encoded CRF 23", ["-crf", "23"]),
        ("re-encoded CRF 28", ["-crf", "28"]),
        ("0.5x downscale, CRF 23", ["-vf", "scale=iw/2:ih/2", "-crf", "23"]),
        (
            "0.5x downscale, CRF 23, preset veryfast",
            ["-vf", "scale=iw/2:ih/2", "-crf", "23", "-preset", "veryfast"],
        ),
        ("0.5x downscale, CRF 28", ["-vf", "scale=iw/2:ih/2", "-crf", "28"]),
    ]
    for group, label in (
        (wm.GROUP, "emo-cli layout (2x2 block groups)"),
        (1, "library layout (1 block per bit)"),
    ):
        marker = wm.FrameMarker(want, group=group)
        marked = marker.mark(frames)
        psnr = 10 * np.log10(255**2 / np.mean((marked.astype(np.float64) - frames) ** 2))
        final = folder / f"final-{group}.mp4"
        if group == wm.GROUP:  # as the render loop marks: the U plane handed to the encoder
            encode(frames, final, mark_u=marker.mark_u_cells)
        else:  # the RGB path, which the library's own decoder reads
            encode(marked, final)
        print(f"  {label}, PSNR {psnr:.1f} dB:")
        for name, args in copies:
            path = final
            if args is not None:
                path = folder / f"copy-{group}.mp4"
                run_ffmpeg(["-i", str(final), "-c:v", "libx264", "-pix_fmt", "yuv420p", *args, str(path)],
                           what="re-encode", file=final)  # fmt: skip
            found = wm.detect(read(path), group=group)
            bits = int(np.sum(np.array(found.bits) == want))
            verdict = "exact" if found.marked and found.job_id_prefix == JOB_ID[:8] else "NOT read"
            print(f"    {name:42s} {bits:2d}/48 bits, confidence {found.confidence:.3f}, {verdict}")
    plain = folder / "plain.mp4"
    encode(frames, plain)
    found = wm.detect(read(plain))
    print(f"  unmarked video: confidence {found.confidence:.3f}, "
          f"{'a mark (false positive!)' if found.marked else 'no mark'}")  # fmt: skip


def render_overhead(folder: Path, seconds: float) -> None:
    """The whole render loop (render, mark, encode, checkpoint, mux, sign) with and without
    the marks, on a backend that only replays precomputed frames, so what is left is the
    pipeline's own cost."""
    from typing import ClassVar

    from emo_cli.backends import registry
    from emo_cli.backends.base import Backend, ChunkOutput, JobRenderer
    from emo_cli.execution.jobs import render_job
    from emo_cli.planning import plan_manifest

    count = int(seconds * 25)
    frames = portrait_frames(512, count)

    class Replay(JobRenderer):
        width = height = 512

        def initial_state(self):
            return {}

        def render_chunk(self, start, count, state):
            return ChunkOutput(frames=frames[start : start + count], state={})

    class ReplayBackend(Backend):
        name: ClassVar[str] = "replay"
        version: ClassVar[str] = "1.0"

        def start_job(self, job):
            return Replay()

    registry.register_backend(ReplayBackend)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "astronaut.jpg").write_bytes(PORTRAIT.read_bytes())
    rate = 16000
    import wave

    with wave.open(str(folder / "voice.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.zeros(int(seconds * rate), dtype="<i2").tobytes())
    print(f"render loop, {seconds:g} s at 512x512/25 fps ({count} frames), replaying precomputed frames:")
    settings = {"marks off": "{watermark: false, sign: false}", "watermark + C2PA": "{}"}
    jobs, spent = {}, {label: [] for label in settings}
    for label, provenance in settings.items():
        manifest = folder / f"{label.split()[0]}.yaml"
        manifest.write_text(
            "version: 1\noutput_dir: out\n"
            f"defaults: {{backend: replay, resolution: 512, provenance: {provenance}}}\n"
            "portraits: {face: astronaut.jpg}\naudio: {voice: voice.wav}\n"
            "jobs: [{portrait: face, audio: voice}]\n"
        )
        (jobs[label],) = plan_manifest(manifest).jobs
    for _ in range(3):  # taking turns, so a slow moment of the machine hits both
        for label, job in jobs.items():
            began = time.perf_counter()
            render_job(job, ReplayBackend(), resume=False)
            spent[label].append(time.perf_counter() - began)
    for label, times in spent.items():
        median = statistics.median(times)
        print(f"  {label:18s} {median:6.2f} s (median of 3), {median / count * 1e3:5.2f} ms per frame, "
              f"{seconds / median:5.1f}x real time")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the accuracy test video")
    parser.add_argument("--frames", type=int, default=200, help="frames timed per resolution")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    per_frame_cost(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        signing_time(Path(tmp))
        accuracy(Path(tmp), args.seconds)
        render_overhead(Path(tmp) / "render", 10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
