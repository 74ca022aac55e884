"""Source videos in: frames at the dataset's frame rate and mono audio at its sample rate (PyAV).

The frame rate is converted the way ffmpeg's `fps` filter does it (each output tick takes the
source frame nearest in time), in a streaming pass, so an hour of footage never sits in memory;
the frame rate is converted here rather than by an ffmpeg filter graph because the caller runs
the face tracker on each frame as it is decoded, twice (see `prepare`). Audio is resampled by
libswresample (PyAV's `AudioResampler`) and aligned to the first video frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a source video, before decoding it."""

    width: int
    height: int
    start: float  # seconds: presentation time of the first video frame
    duration: float  # seconds (an estimate from the container; 0 when it does not say)

    def frames_at(self, fps: int) -> int:
        """The expected number of frames at `fps` (for progress bars; decoding has the last word)."""
        return max(0, round(self.duration * fps))


def _open(path: Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"video {path} cannot be read (damaged, truncated or not a video): {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip() or type(exc).__name__


def probe_video(path: Path) -> VideoInfo:
    """Open `path` and check that it has a video and an audio stream.

    Raises:
        InputError: unreadable, no video stream, or no audio stream (a silent video teaches nothing).
    """
    if not path.is_file():
        raise InputError(f"video {path} does not exist" if not path.exists() else f"video {path} is not a file")
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"video {path} has no video stream")
        if not container.streams.audio:
            raise InputError(f"video {path} has no audio stream: training needs the speech that drives the face")
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        if not duration and container.duration:
            duration = container.duration / 1_000_000
    for start, rgb in _decoded_frames(path):
        return VideoInfo(width=rgb.shape[1], height=rgb.shape[0], start=start, duration=duration)
    raise InputError(f"video {path} has no decodable video frame")


def _decoded_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(presentation time in seconds, RGB frame) of every decodable frame, turned upright.

    A display rotation in the container (phones store portrait video as landscape frames plus
    a rotation) is applied, as players and ffmpeg do.
    """
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        count = 0
        last = None
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    time = float(frame.time)
                elif last is not None:
                    time = last + 1 / rate
                else:
                    time = count / rate
                if last is not None and time <= last:  # broken timestamps: keep the order, move on
                    time = last + 1e-6
                last = time
                count += 1
                rgb = frame.to_ndarray(format="rgb24")
                turns = round((frame.rotation or 0) / 90) % 4
                yield time, (np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb)
        except av.error.FFmpegError as exc:
            if count == 0:
                raise InputError(f"video {path} cannot be decoded: {_reason(exc)}") from None
            # A damaged tail: what decoded so far is kept; the frames after the damage are lost.


# A source frame held for longer than this (seconds) marks a gap: damaged or missing footage.
GAP_SECONDS = 0.1


def read_frames(path: Path, fps: int) -> Iterator[np.ndarray]:
    """The frames of `path` at `fps` as RGB uint8 arrays, frame k at start + k / fps.

    Frame k is the source frame whose time is nearest to start + k / fps (ties to the earlier).
    Deterministic: two passes over the same file yield the same frames.
    """
    for rgb, _ in read_frames_marked(path, fps):
        yield rgb


def read_frames_marked(path: Path, fps: int) -> Iterator[tuple[np.ndarray, bool]]:
    """`read_frames`, each frame with whether it stands in a gap of the source.

    A damaged or cut file that ffmpeg still decodes has a hole in its timestamps; its frames
    there repeat the last frame before the hole (as ffmpeg's `fps` filter does). Those are
    marked True when the source frame they show is more than `GAP_SECONDS` away from their own
    time, so a caller can keep them out of anything that must move with the audio.
    """
    previous: tuple[float, np.ndarray] | None = None
    start = 0.0
    k = 0
    step = 1.0 / fps

    def held(source_time: float) -> bool:
        return abs(start + k * step - source_time) > GAP_SECONDS

    for time, rgb in _decoded_frames(path):
        if previous is None:
            previous, start = (time, rgb), time
            continue
        boundary = (previous[0] + time) / 2
        while start + k * step < boundary - 1e-9:
            yield previous[1], held(previous[0])
            k += 1
        previous = (time, rgb)
    if previous is None:
        return
    # The last source frame lasts as long as one output frame at most (or its own duration).
    end = previous[0] + step / 2
    while start + k * step < end - 1e-9:
        yield previous[1], held(previous[0])
        k += 1


def read_audio(path: Path, sample_rate: int, start: float) -> np.ndarray:
    """The first audio stream of `path`, mono float32 at `sample_rate`, sample 0 at time `start`.

    Audio that begins after `start` is preceded by silence; audio before `start` is dropped, so
    sample i belongs to video time start + i / sample_rate. A hole in the audio's timestamps
    (damaged or cut footage) becomes silence of the hole's length, so what follows it stays in
    sync with the picture.
    """
    import av

    pieces: list[tuple[float, np.ndarray]] = []  # (time of the first sample, samples)
    with _open(path) as container:
        stream = container.streams.audio[0]
        resampler = None
        piece_start = 0.0
        chunks: list[np.ndarray] = []
        expected: float | None = None  # when the next audio frame should start

        def flush() -> None:
            if resampler is not None:
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
            if chunks:
                pieces.append((piece_start, np.concatenate(chunks)))
            chunks.clear()

        try:
            for frame in container.decode(stream):
                time = float(frame.time) if frame.time is not None else expected or 0.0
                if resampler is None or (expected is not None and abs(time - expected) > GAP_SECONDS):
                    # A new piece: the resampler is flushed so the piece ends exactly where its audio ends.
                    flush()
                    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                    piece_start = time
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
                expected = time + frame.samples / frame.sample_rate
            flush()
        except av.error.FFmpegError as exc:
            flush()
            if not pieces:
                raise InputError(f"video {path}: its audio cannot be decoded: {_reason(exc)}") from None
    if not pieces:
        return np.zeros(0, np.float32)
    end = max(round((t - start) * sample_rate) + x.size for t, x in pieces)
    samples = np.zeros(max(end, 0), np.float32)
    for time, piece in pieces:
        at = round((time - start) * sample_rate)
        if at < 0:
            piece, at = piece[-at:], 0
        samples[at : at + piece.size] = piece
    return np.clip(samples, -1.0, 1.0)
