"""Reading a video for measuring: its frames one at a time, its audio, its frame rate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.errors import EmoError, MediaError
from emo_cli.media.audio import decode_audio
from emo_cli.media.probe import open_video


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int
    height: int
    has_audio: bool


def video_info(path: Path) -> VideoInfo:
    """Frame rate, size and whether there is an audio stream.

    Raises:
        MediaError: the file cannot be opened or has no video stream.
    """
    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise MediaError(f"{path}: the video stream has no frame rate")
        return VideoInfo(float(rate), stream.width, stream.height, bool(container.streams.audio))


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of the first video stream as RGB uint8, in order, one at a time."""
    import av

    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode the video of {path}: {exc}") from exc


def video_audio(path: Path, rate: int) -> np.ndarray | None:
    """The video's own audio track as mono float32 at `rate`, or None when it has none."""
    try:
        return decode_audio(path, rate)
    except EmoError:
        return None
