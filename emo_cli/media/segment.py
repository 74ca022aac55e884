"""Video segments: one file per chunk in the output's format (H.264 MP4 by default), encoded from
frames piped into ffmpeg as raw planes of the format's pixel format (YUV 4:2:0).

The codec, its settings and the container come from the format table (`formats`): the same
frames always give the same bytes, and every segment is exactly one GOP that starts with a key
frame, so the final mux can concatenate segments without re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from emo_cli.errors import RenderError
from emo_cli.media.ffmpeg import FfmpegOutput
from emo_cli.media.formats import MP4, OutputFormat

FRAME_CONVERTERS: dict[str, Callable[..., np.ndarray]] = {}  # pixel format -> RGB frame to its planes


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


FRAME_CONVERTERS["yuv420p"] = rgb_to_yuv420p


class SegmentEncoder:
    """One segment in the making: `feed` pipes its frames into ffmpeg, `finish` puts the file in place.

    After `feed`, ffmpeg still encodes its lookahead and writes the file on its own (tens of
    milliseconds), so the caller can start and feed the next segment's encoder meanwhile
    instead of waiting with a core idle. `finish` waits for it and renames the file into place
    atomically; `abort` stops it and leaves nothing. `gop` is the job's chunk size: every
    segment is one GOP (the last one may be shorter). `fmt` is the output's format.
    """

    def __init__(self, path: Path, *, width: int, height: int, fps: int, gop: int, fmt: OutputFormat = MP4) -> None:
        if width % 2 or height % 2:
            raise RenderError(f"frames are {width}x{height}; {fmt.pixel_format} needs even width and height")
        self.width, self.height = width, height
        self.convert = FRAME_CONVERTERS[fmt.pixel_format]
        self._output = FfmpegOutput(
            ["-f", "rawvideo", "-pix_fmt", fmt.pixel_format, "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
             "-an", *fmt.video_args(fps, gop), "-f", fmt.muxer],
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
        watermark, in the plane the format names; see `rgb_to_yuv420p`), so that work overlaps with ffmpeg encoding the frames
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
            planar = None  # the converted frame's buffer, allocated once and reused
            for index in range(count):
                planar = self.convert(frames[index], planar, mark_u)
                self._output.process.write(planar.data)
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
    fmt: OutputFormat = MP4,
) -> None:
    """Encode `frames` (uint8 RGB, (n, H, W, 3)) to the segment `path` in format `fmt`, atomically,
    and wait for it.

    See `SegmentEncoder` for the arguments; the render loop uses that to overlap segments.
    """
    if frames.ndim != 4:
        raise RenderError(f"backend returned frames of shape {frames.shape}, expected (n, height, width, 3)")
    segment = SegmentEncoder(path, width=frames.shape[2], height=frames.shape[1], fps=fps, gop=gop, fmt=fmt)
    segment.feed(frames, on_half=on_half, mark_u=mark_u)
    segment.finish()
