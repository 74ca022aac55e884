"""Video segments: one H.264 MP4 per chunk, encoded from raw RGB frames piped into ffmpeg.

Settings are fixed so that the same frames always give the same bytes (single-threaded x264,
no B-frames, bit-exact muxing), and every segment is exactly one GOP that starts with an IDR
frame, so the final mux can concatenate segments without re-encoding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emo_cli.errors import RenderError
from emo_cli.fsutil import atomic_path
from emo_cli.media.ffmpeg import FfmpegProcess

CRF = 18
PRESET = "veryfast"
# Time base of every segment's video track: a multiple of every common fps, so frame times are
# exact integers and concatenated segments line up with no rounding drift.
TRACK_TIMESCALE = 90000


def encoder_args(fps: int, gop: int) -> list[str]:
    """The x264 settings shared by every segment of a job (the concat copy relies on this)."""
    return [
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p",
        "-threads", "1", "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:lookahead-threads=1",
        "-r", str(fps), "-video_track_timescale", str(TRACK_TIMESCALE),
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
    ]  # fmt: skip


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """One RGB frame as planar BT.601 limited-range YUV 4:2:0, as x264 takes it.

    Converting here (OpenCV, a fraction of a millisecond at 512x512) instead of in ffmpeg's
    swscale halves the bytes through the pipe and takes about 1.5 ms per 512x512 frame off the
    encoder, which is the render loop's bottleneck on a CPU backend. Luma matches swscale's to
    one level; chroma is a 2x2 average where swscale filters slightly wider.
    """
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


def encode_segment(
    frames: np.ndarray,
    path: Path,
    *,
    fps: int,
    gop: int,
    on_half: Callable[[], None] | None = None,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> None:
    """Encode `frames` (uint8 RGB, (n, H, W, 3)) to the MP4 `path`, atomically.

    `gop` is the job's chunk size: every segment is one GOP (the last one may be shorter).
    `on_half` is called once half the frames are in ffmpeg's pipe (a checkpoint hook).
    `prepare` maps each frame just before it is written (the watermark), so that work overlaps
    with ffmpeg encoding the frames before it.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise RenderError(
            f"backend returned frames of shape {frames.shape} and dtype {frames.dtype}, "
            "expected uint8 (n, height, width, 3)"
        )
    count, height, width, _ = frames.shape
    if count == 0:
        raise RenderError("backend returned no frames for a chunk")
    if width % 2 or height % 2:
        raise RenderError(f"frames are {width}x{height}; H.264 yuv420p needs even width and height")
    with atomic_path(path) as tmp:
        encoder = FfmpegProcess(
            ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
             "-an", *encoder_args(fps, gop), "-f", "mp4", os.fspath(tmp)],
            what="encode video segment",
            file=path,
            stdin=True,
        )  # fmt: skip
        try:
            for index in range(count):
                frame = frames[index] if prepare is None else prepare(frames[index])
                encoder.write(rgb_to_yuv420p(frame).data)
                if on_half is not None and index + 1 == (count + 1) // 2:
                    on_half()
        except BaseException:
            encoder.kill()
            raise
        encoder.finish()
