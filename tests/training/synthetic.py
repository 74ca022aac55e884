"""Small talking-head stand-ins for dataset tests: the astronaut portrait, moved by a known amount."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

from emo_cli.training import PrepareSettings

FPS = 25
SAMPLE_RATE = 16000
SIZE = 320  # the face is about 64 px wide at this size: well inside what the detector finds
RESOLUTION = 256  # training crops of the test datasets
SETTINGS = PrepareSettings(resolution=RESOLUTION, val_fraction=0.5)


def portrait(size: int = SIZE) -> np.ndarray:
    return cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """`image` turned by `degrees` about its centre (counter-clockwise), edges reflected."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced tone whose loudness rises and falls at syllable rate (about 4 Hz)."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))
    return (0.3 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def write_video(path: Path, frames: int, frame_at: Callable[[int], np.ndarray], audio: np.ndarray | None,
                crf: int = 10) -> Path:  # fmt: skip
    """An MP4 (H.264 + AAC) of `frames` frames at 25 fps; no audio stream when `audio` is None."""
    first = frame_at(0)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height = first.shape[1], first.shape[0]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
        for i in range(frames):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame_at(i) if i else first, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            block = 1024
            for start in range(0, len(audio), block):
                chunk = audio[start : start + block].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def rotating_video(path: Path, degrees_per_frame: float, frames: int = 40, seed: int = 0) -> Path:
    """The portrait rolling back and forth at a constant `degrees_per_frame` (turning every 20 frames)."""
    image = portrait()
    half = 10

    def angle(i: int) -> float:
        # A triangle wave from -half to +half steps: constant speed, reversing at the ends.
        phase = i % (4 * half)
        step = phase if phase <= half else 2 * half - phase if phase <= 3 * half else phase - 4 * half
        return degrees_per_frame * step

    return write_video(path, frames, lambda i: rotated(image, angle(i)), speech_like(frames / FPS, seed))


_prepared: dict[str, tuple] = {}


def prepared_dataset(tmp_path_factory) -> tuple:
    """Three rolling portraits (0, 1 and 3 degrees per frame), two people, one dataset, made once.

    Returns (folder, {speed: video}, summary, events); the dataset is folder / "data". Tests that
    change it work on a copy. (A plain function, not a conftest fixture: other test folders import their
    own `conftest` by name.)
    """
    from emo_cli.training import prepare_dataset

    if "dataset" not in _prepared:
        folder = tmp_path_factory.mktemp("prepare")
        videos = {speed: rotating_video(folder / f"roll{speed:g}.mp4", speed, seed=int(speed)) for speed in (0, 1, 3)}
        identities = {"roll0.mp4": "anna", "roll1.mp4": "anna", "roll3.mp4": "bob"}
        events: list[dict] = []
        summary = prepare_dataset(list(videos.values()), folder / "data", SETTINGS, identities, events=events.append)
        _prepared["dataset"] = (folder, videos, summary, events)
    return _prepared["dataset"]
