"""CPU per frame of each step of a `warp` render at 512x512, one step at a time on an idle core.

Renders `--seconds` of the committed speech (astronaut portrait, 25 fps) and times, in CPU
seconds of this thread or of the ffmpeg children:

- the warp alone (`WarpRenderer.render_frame`: displacement, remap, mouth);
- the conversion to YUV 4:2:0 for the encoder, without and with the watermark in its U plane;
- x264, encoding the frames in segments of `--chunk-frames` as the render loop does, the
  cost of starting one segment's ffmpeg (a one-frame segment), and of that, what starting the
  ffmpeg binary alone costs (`ffmpeg -version`).

    python benchmarks/frame_costs.py [--seconds 20] [--chunk-frames 50]

`benchmarks/warp_speed.py` shows how these add up when they share two cores.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from warp_speed import children_cpu, warp_renderer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--chunk-frames", type=int, default=50)
    args = parser.parse_args()

    from emo_cli.media.ffmpeg import ffmpeg_exe
    from emo_cli.media.segment import encode_segment, rgb_to_yuv420p
    from emo_cli.provenance.watermark import FrameMarker

    with tempfile.TemporaryDirectory(prefix="emo-frame-costs-") as tmp:
        folder = Path(tmp)
        renderer, job = warp_renderer(args.seconds, folder)
        count = job.num_frames
        frames = np.empty((count, renderer.height, renderer.width, 3), dtype=np.uint8)
        warp = []
        for index in range(count):
            began = time.thread_time()
            renderer.render_frame(index, out=frames[index])
            warp.append(time.thread_time() - began)
        renderer.close()

        marker = FrameMarker.for_job(job.job_id)
        planar = np.empty((renderer.height * 3 // 2, renderer.width), dtype=np.uint8)
        convert, marked = [], []
        for frame in frames:
            for mark_u, spent in ((None, convert), (marker.mark_u_cells, marked)):
                began = time.thread_time()
                rgb_to_yuv420p(frame, planar, mark_u)
                spent.append(time.thread_time() - began)

        before = children_cpu()
        for start in range(0, count, args.chunk_frames):
            chunk = frames[start : start + args.chunk_frames]
            encode_segment(chunk, folder / f"{start:06d}.mp4", fps=25, gop=args.chunk_frames)
        segments = -(-count // args.chunk_frames)
        encode = children_cpu() - before
        before = children_cpu()
        for index in range(10):
            encode_segment(frames[index : index + 1], folder / f"one{index}.mp4", fps=25, gop=args.chunk_frames)
        start_cost = (children_cpu() - before) / 10
        before = children_cpu()
        for _ in range(10):
            subprocess.run([ffmpeg_exe(), "-version"], stdout=subprocess.DEVNULL, check=True)
        binary_cost = (children_cpu() - before) / 10

    ms = lambda seconds: f"{1000 * seconds:6.2f}"  # noqa: E731
    print(f"warp at 512x512, {count} frames ({args.seconds:.0f} s), CPU ms per frame (median):")
    print(f"  warp alone                              {ms(statistics.median(warp))}")
    print(f"  YUV 4:2:0 conversion                    {ms(statistics.median(convert))}")
    print(f"  YUV 4:2:0 conversion with the watermark {ms(statistics.median(marked))}")
    print(f"  x264, segments of {args.chunk_frames} frames            {ms(encode / count)}"
          f"   (of which starting ffmpeg {ms(start_cost * segments / count)})")  # fmt: skip
    print(f"starting one segment's ffmpeg (a one-frame segment): {1000 * start_cost:.1f} ms of CPU, "
          f"of which starting the ffmpeg binary (ffmpeg -version) {1000 * binary_cost:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
