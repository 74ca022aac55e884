"""Measurements on rendered frames: the face mesh run on the output, as a viewer would see it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from factories import write_samples

from emo_cli.backends.base import JobInput
from emo_cli.backends.face import face_mesh_landmarks
from emo_cli.media.audio import decode_audio

RATE = 16000
FPS = 25
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))  # upper, lower inner-lip landmarks
EYE_PAIRS = ((159, 145), (386, 374))  # upper, lower eyelid
FOREHEAD, CHIN, NOSE_TIP, NOSE_BRIDGE = 10, 152, 1, 168
MOUTH_CORNERS, OUTER_LIP_PAIRS = (61, 291), ((0, 17), (37, 84), (267, 314))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LANGUAGES = ("en", "es", "de")
# espeak-ng phoneme names by class. Spanish "B" (a bilabial approximant, lips near but apart)
# is not a closure and belongs to no class.
BILABIALS = {"p", "b", "m"}
OPEN_VOWELS = {"a", "a#", "a:", "A", "A:", "aI", "aU", "V", "0"}
ROUNDED_VOWELS = {"u", "u:", "U", "o", "o:", "O", "O:", "oU", "u:#"}
SPREAD_VOWELS = {"i", "i:", "I", "e", "e:", "eI", "E", "E:"}


def fixture_speech(lang: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A committed espeak-ng recording and its phones as (name, start s, end s)."""
    record = json.loads((FIXTURES / f"{lang}.json").read_text())
    return speech(FIXTURES / f"{lang}.wav"), [tuple(p) for p in record["phones"]]


def phone_frames(phones, names: set[str], num_frames: int, fps: int = FPS) -> np.ndarray:
    """Frames whose centre lies inside a phone named in `names`."""
    centres = (np.arange(num_frames) + 0.5) / fps
    hit = np.zeros(num_frames, dtype=bool)
    for name, start, end in phones:
        if name in names:
            hit |= (centres >= start) & (centres < end)
    return np.flatnonzero(hit)


def speech(path: Path) -> np.ndarray:
    return decode_audio(path, RATE)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    return write_samples(path, samples, rate)


def job_input(
    portrait: Path, audio: np.ndarray, *, seed: int = 0, resolution: int = 512, **options
) -> JobInput:
    frames = int(np.ceil(len(audio) / RATE * FPS))
    return JobInput("test", Path(portrait), audio, RATE, FPS, frames, seed, resolution, options)


def frame_loudness(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """RMS level of each video frame's slice of audio, 0 (40 dB under the loud level) .. 1."""
    per = RATE // FPS
    padded = np.zeros(num_frames * per)
    padded[: min(len(audio), padded.size)] = audio[: padded.size]
    level = 10 * np.log10(np.mean(padded.reshape(num_frames, per) ** 2, axis=1) + 1e-12)
    loud = np.percentile(level, 95)
    return np.clip((level - (loud - 40)) / 40, 0, 1)


class FaceTrack:
    """Mouth and eye apertures (in face heights) and head landmarks (pixels) from the face mesh."""

    def __init__(self, frames: np.ndarray) -> None:
        mouth, eyes, bridge, forehead, shape = [], [], [], [], []
        for frame in frames:
            lm = face_mesh_landmarks(frame)
            assert lm is not None, "the face mesh lost the face in an output frame"
            height = np.linalg.norm(lm[FOREHEAD] - lm[CHIN])
            mouth.append(np.mean([lm[b, 1] - lm[a, 1] for a, b in INNER_LIP_PAIRS]) / height)
            eyes.append(np.mean([lm[b, 1] - lm[a, 1] for a, b in EYE_PAIRS]) / height)
            lips = np.mean([np.linalg.norm(lm[b] - lm[a]) for a, b in OUTER_LIP_PAIRS])
            shape.append(np.linalg.norm(lm[MOUTH_CORNERS[1]] - lm[MOUTH_CORNERS[0]]) / lips)
            bridge.append(lm[NOSE_BRIDGE])
            forehead.append(lm[FOREHEAD])
        self.mouth = np.array(mouth)
        self.eyes = np.array(eyes)
        self.bridge = np.array(bridge)
        self.forehead = np.array(forehead)
        self.shape = np.array(shape)  # mouth width (corner to corner) over outer lip height

    def blinks(self) -> list[int]:
        """First frame of each run of frames whose eyes are under 65% of their usual opening.

        (The mesh never quite reports a shut eye as closed: at full closure it still gives a
        third to a half of the open eye's aperture.)
        """
        shut = self.eyes < 0.65 * np.median(self.eyes)
        return [i for i in range(len(shut)) if shut[i] and (i == 0 or not shut[i - 1])]


def lagged_correlations(signal: np.ndarray, reference: np.ndarray, max_lag: int = 4) -> dict[int, float]:
    """Pearson r of signal[t + lag] with reference[t], for lags -max_lag..max_lag frames."""
    n = len(signal)
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        a = signal[max(0, lag) : n + min(0, lag)]
        b = reference[max(0, -lag) : n - max(0, lag)]
        out[lag] = float(np.corrcoef(a, b)[0, 1])
    return out


def lower_face_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The mouth and jaw region (the face below the nose, widened a little) as a bool mask."""
    import cv2

    mesh = landmarks[:468]
    height = np.linalg.norm(mesh[FOREHEAD] - mesh[CHIN])
    lower = mesh[mesh[:, 1] > mesh[NOSE_TIP, 1]]
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [cv2.convexHull(lower.astype(np.float32)).astype(np.int32)], 1)
    size = int(0.15 * height) | 1
    return cv2.dilate(mask, np.ones((size, size), np.uint8)) > 0


def ssim_outside(reference: np.ndarray, frame: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (grey levels) over the pixels where `mask` is False."""
    import cv2
    from skimage.metrics import structural_similarity

    grey = [cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) for img in (reference, frame)]
    _, full = structural_similarity(grey[0], grey[1], data_range=255, full=True)
    return float(full[~mask].mean())
