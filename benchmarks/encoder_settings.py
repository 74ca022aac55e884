"""What the segment encoder's x264 settings cost: CPU per frame, file size and SSIM.

Renders `--seconds` of the committed speech with the `warp` backend (astronaut portrait,
512x512, 25 fps), converts the frames to YUV 4:2:0 with the watermark as the render loop does,
and encodes them once per candidate setting, in segments of `--chunk-frames` frames (one
ffmpeg per segment, as the render loop runs it). Prints the encoder's CPU time per frame (user
+ system, of the ffmpeg processes), the total size and the SSIM against the frames encoded.

    python benchmarks/encoder_settings.py [--seconds 20] [--chunk-frames 50]

The first row is what `emo_cli.media.segment` uses now.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from warp_speed import children_cpu, warp_renderer  # noqa: E402

CANDIDATES = [  # (label, preset, extra x264 parameters)
    ("veryfast + dia, subme 1, no partitions (current)", "veryfast", "me=dia:subme=1:partitions=none"),
    ("current + no mb-tree, no lookahead", "veryfast", "me=dia:subme=1:partitions=none:no-mbtree=1:rc-lookahead=0"),
    ("current + no mb-tree, lookahead 5", "veryfast", "me=dia:subme=1:partitions=none:no-mbtree=1:rc-lookahead=5"),
    ("current + no weighted P", "veryfast", "me=dia:subme=1:partitions=none:weightp=0"),
    ("current + no 8x8 dct", "veryfast", "me=dia:subme=1:partitions=none:no-8x8dct=1"),
    ("current + aq off", "veryfast", "me=dia:subme=1:partitions=none:aq-mode=0"),
    ("current + cavlc", "veryfast", "me=dia:subme=1:partitions=none:no-cabac=1"),
    ("veryfast", "veryfast", ""),
    ("veryfast + dia, subme 1", "veryfast", "me=dia:subme=1"),
    ("superfast", "superfast", ""),
    ("ultrafast", "ultrafast", ""),
]


def render_frames(seconds: float, folder: Path) -> tuple[Path, int]:
    """Raw yuv420p frames of a warp render, watermarked as the render loop marks them."""
    from emo_cli.media.segment import rgb_to_yuv420p
    from emo_cli.provenance.watermark import FrameMarker

    renderer, job = warp_renderer(seconds, folder)
    frames = job.num_frames
    marker = FrameMarker.for_job(job.job_id)
    raw = folder / "frames.yuv"
    with raw.open("wb") as out:
        for index in range(frames):
            out.write(rgb_to_yuv420p(renderer.render_frame(index), mark_u=marker.mark_u_cells).data)
    renderer.close()
    return raw, frames


def encode(
    raw: Path, frames: int, chunk: int, preset: str, extra: str, folder: Path
) -> tuple[float, int, Path]:
    """CPU seconds and bytes of encoding `raw` in segments; the segments' concatenation."""
    from emo_cli.media.ffmpeg import ffmpeg_exe

    frame_bytes = 512 * 512 * 3 // 2
    params = f"keyint={chunk}:min-keyint={chunk}:scenecut=0:threads=1:lookahead-threads=1"
    params += f":{extra}" if extra else ""
    before = children_cpu()
    size, names = 0, []
    with raw.open("rb") as source:
        for index, start in enumerate(range(0, frames, chunk)):
            data = source.read(frame_bytes * min(chunk, frames - start))
            segment = folder / f"seg{index:04d}.mp4"
            subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
                            "-pix_fmt", "yuv420p", "-s", "512x512", "-r", "25", "-i", "-", "-c:v", "libx264",
                            "-preset", preset, "-crf", "18", "-threads", "1", "-bf", "0", "-g", str(chunk),
                            "-x264-params", params, os.fspath(segment)], input=data, check=True)  # fmt: skip
            size += segment.stat().st_size
            names.append(f"file '{segment.name}'")
    cpu = children_cpu() - before
    listing = folder / "list.ffconcat"
    listing.write_text("ffconcat version 1.0\n" + "\n".join(names) + "\n")
    return cpu, size, listing


def ssim(raw: Path, listing: Path) -> float:
    from emo_cli.media.ffmpeg import ffmpeg_exe

    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "512x512",
                           "-r", "25", "-i", os.fspath(raw), "-f", "concat", "-safe", "1", "-i", os.fspath(listing),
                           "-lavfi", "[1:v][0:v]ssim", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return float(re.findall(r"All:([0-9.]+)", proc.stderr)[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--chunk-frames", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emo-encoder-bench-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        raw, frames = render_frames(args.seconds, folder)
        print(f"{frames} frames of warp at 512x512 rendered in {time.perf_counter() - began:.1f} s; "
              f"segments of {args.chunk_frames} frames, CRF 18, one thread; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        print(f"{'setting':<50}{'cpu ms/frame':>13}{'size MB':>9}{'vs current':>11}{'SSIM':>8}")
        base = None
        for label, preset, extra in CANDIDATES:
            cpu, size, listing = encode(raw, frames, args.chunk_frames, preset, extra, folder)
            base = base or size
            print(f"{label:<50}{1000 * cpu / frames:>13.2f}{size / 1e6:>9.2f}{size / base:>10.2f}x"
                  f"{ssim(raw, listing):>8.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
