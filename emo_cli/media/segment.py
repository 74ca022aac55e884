"""Video segments: one H.264 MP4 per chunk, encoded from frames piped into ffmpeg as raw YUV 4:2:0.

Settings are fixed so that the same frames always give the same bytes (single-threaded x264,
no B-frames, bit-exact muxing), and every segment is exactly one GOP that starts with an IDR
frame, so the final mux can concatenate segments without re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from emo_cli.errors import RenderError
from emo_cli.media.ffmpeg import FfmpegOutput

CRF = 18
PRESET = "veryfast"
# On top of the preset: diamond motion search, one subpixel refinement pass, no sub-macroblock
# partitions. On a 60 s warp render at 512x512 (benchmarks/encoder_settings.py) this takes the
# encoder from about 3.3 to 2.0 ms of CPU per frame for files about 10% larger at the same SSIM.
# A talking portrait has little motion and large still areas, where these searches find little.
X264_SPEED = "me=dia:subme=1:partitions=none"
# Time base of every segment's video track: a multiple of every common fps, so frame times are
# exact integers and concatenated segments line up with no rounding drift.
TRACK_TIMESCALE = 90000


def encoder_args(fps: int, gop: int) -> list[str]:
    """The x264 settings shared by every segment of a job (the concat copy relies on this)."""
    return [
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p",
        "-threads", "1", "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:lookahead-threads=1:{X264_SPEED}",
        "-r", str(fps), "-video_track_timescale", str(TRACK_TIMESCALE),
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
    ]  # fmt: skip


# BT.601 limited-range chroma (what yuv420p carries, OpenCV's I420 weights: 0.439 = 460324 / 2^20
# for B in U and R in V) per unit of OpenCV's YUV chroma, U = 0.492 (B - Y), V = 0.877 (R - Y).
U_GAIN = (460324 / 2**20) / (1 - 0.114) / 0.492
V_GAIN = (460324 / 2**20) / (1 - 0.299) / 0.877
_LEVELS = np.arange(256, dtype=np.float64)
_U_LUT = np.clip(np.rint(128 + (_LEVELS - 128) * U_GAIN), 0, 255).astype(np.uint8)
_V_LUT = np.clip(np.rint(128 + (_LEVELS - 128) * V_GAIN), 0, 255).astype(np.uint8)


def rgb_to_yuv420p(
    rgb: np.ndarray, out: np.ndarray | None = None, mark_u: Callable[[np.ndarray], None] | None = None
) -> np.ndarray:
    """One RGB frame as planar BT.601 limited-range YUV 4:2:0 (I420, (H * 3 / 2, W)), as x264 takes it.

    Luma comes from OpenCV's I420 conversion. Chroma is converted from the 2x2 mean of each
    pixel quad (OpenCV's I420 takes the top-left pixel's chroma instead, which aliases fine
    colour detail). Converting here (OpenCV, about 0.4 ms at 512x512) instead of in ffmpeg's
    swscale halves the bytes through the pipe and takes work off the encoder, the render
    loop's bottleneck on a CPU backend.

    `mark_u`, if given, changes the half-size U plane in place before it is rounded: OpenCV's
    U (not yet limited range) of each 2x2 cell, (H / 2, W / 2) float32. That is where the
    invisible watermark goes.
    """
    import cv2

    height, width = rgb.shape[:2]
    if out is None:
        out = np.empty((height * 3 // 2, width), dtype=np.uint8)
    rgb = np.ascontiguousarray(rgb)
    cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420, dst=out)
    half = cv2.cvtColor(
        cv2.resize(rgb, (width // 2, height // 2), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2YUV
    )
    quarter = height * width // 4
    chroma = out.reshape(-1)[height * width :]
    u_plane = chroma[:quarter].reshape(height // 2, width // 2)
    v_plane = chroma[quarter:].reshape(height // 2, width // 2)
    cv2.LUT(cv2.extractChannel(half, 2), _V_LUT, dst=v_plane)
    if mark_u is None:
        cv2.LUT(cv2.extractChannel(half, 1), _U_LUT, dst=u_plane)
        return out
    u = cv2.extractChannel(half, 1).astype(np.float32)
    mark_u(u)
    u -= 128
    u *= np.float32(U_GAIN)
    u += 128
    np.clip(np.rint(u, out=u), 0, 255, out=u)
    u_plane[:] = u
    return out


class SegmentEncoder:
    """One segment in the making: `feed` pipes its frames into ffmpeg, `finish` puts the MP4 in place.

    After `feed`, ffmpeg still encodes its lookahead and writes the file on its own (tens of
    milliseconds), so the caller can start and feed the next segment's encoder meanwhile
    instead of waiting with a core idle. `finish` waits for it and renames the file into place
    atomically; `abort` stops it and leaves nothing. `gop` is the job's chunk size: every
    segment is one GOP (the last one may be shorter).
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: int, gop: int) -> None:
        if width % 2 or height % 2:
            raise RenderError(f"frames are {width}x{height}; H.264 yuv420p needs even width and height")
        self.width, self.height = width, height
        self._output = FfmpegOutput(
            ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
             "-an", *encoder_args(fps, gop), "-f", "mp4"],
            path, what="encode video segment", file=path, stdin=True,
        )  # fmt: skip

    def feed(
        self,
        frames: np.ndarray,
        *,
        on_half: Callable[[], None] | None = None,
        mark_u: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        """Pipe all of `frames` (uint8 RGB, (n, H, W, 3)) in and close ffmpeg's input.

        `on_half` is called once half the frames are in ffmpeg's pipe (a checkpoint hook).
        `mark_u` changes each frame's U plane as it is converted for the encoder (the
        watermark; see `rgb_to_yuv420p`), so that work overlaps with ffmpeg encoding the frames
        before it. On any error the segment is aborted.
        """
        try:
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise RenderError(
                    f"backend returned frames of shape {frames.shape} and dtype {frames.dtype}, "
                    "expected uint8 (n, height, width, 3)"
                )
            count, height, width, _ = frames.shape
            if count == 0:
                raise RenderError("backend returned no frames for a chunk")
            if (width, height) != (self.width, self.height):
                raise RenderError(f"frames are {width}x{height}, the segment is {self.width}x{self.height}")
            planar = np.empty((height * 3 // 2, width), dtype=np.uint8)
            for index in range(count):
                self._output.process.write(rgb_to_yuv420p(frames[index], planar, mark_u).data)
                if on_half is not None and index + 1 == (count + 1) // 2:
                    on_half()
            self._output.process.close_input()
        except BaseException:
            self.abort()
            raise

    def finish(self) -> None:
        """Wait for ffmpeg and rename the segment into place (fsynced)."""
        self._output.finish()

    def abort(self) -> None:
        self._output.abort()


def encode_segment(
    frames: np.ndarray,
    path: Path,
    *,
    fps: int,
    gop: int,
    on_half: Callable[[], None] | None = None,
    mark_u: Callable[[np.ndarray], None] | None = None,
) -> None:
    """Encode `frames` (uint8 RGB, (n, H, W, 3)) to the MP4 `path`, atomically, and wait for it.

    See `SegmentEncoder` for the arguments; the render loop uses that to overlap segments.
    """
    if frames.ndim != 4:
        raise RenderError(f"backend returned frames of shape {frames.shape}, expected (n, height, width, 3)")
    segment = SegmentEncoder(path, width=frames.shape[2], height=frames.shape[1], fps=fps, gop=gop)
    segment.feed(frames, on_half=on_half, mark_u=mark_u)
    segment.finish()
