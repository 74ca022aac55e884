"""The measures, as pure functions of frames, face-mesh landmarks, audio and a reference.

Nothing here reads a file or keeps state, so a render loop can run them on a bounded sample of
a chunk's frames as it commits the chunk (`emo_cli.quality.chunk.measure_chunk`), and `emo qc`
runs the same functions on every frame of a finished video. Units are in each record's field comments; the
README's "Quality gates" section defines each measure.

Why these are written here rather than taken from a library: each is a few lines of numpy or
OpenCV over the face mesh (SSIM is OpenCV arithmetic on Gaussian moments, as in Wang et al.
2004, checked against scikit-image's in the tests), and the packages that ship them would add
scikit-image and SciPy (kept out of the core on purpose) or torch (pyiqa) to the CPU path for
one formula each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Face-mesh landmark indices (MediaPipe's 468/478-point canonical mesh).
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))  # upper, lower inner lip
EYE_PAIRS = ((159, 145), (386, 374))  # upper, lower eyelid
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
# Points that neither speech nor blinks move: forehead, nose bridge and ridge, eye corners,
# temples. What moves them is head motion (removed by a similarity fit) or tracking noise.
STABLE = (10, 151, 9, 168, 6, 197, 195, 5, 33, 133, 362, 263, 127, 356, 70, 300)

LOUDNESS_RANGE_DB = 40.0  # loudness 0..1 spans this many dB under the loud level
SSIM_SIZE = 96  # the upper face is compared at this many pixels square


@dataclass(frozen=True)
class FaceGeometry:
    """What one frame's face mesh says, in pixels or face heights (forehead to chin)."""

    mouth: float  # inner-lip aperture / face height
    eyes: float  # eyelid aperture / face height
    height: float  # face height, px
    stable: np.ndarray  # (len(STABLE), 2) px
    oval: np.ndarray  # (len(FACE_OVAL), 2) px
    nose_tip_y: float


def face_geometry(landmarks: np.ndarray) -> FaceGeometry:
    """Mouth and eye apertures and the stable points of one frame's (N, 2) face-mesh landmarks."""
    height = float(np.linalg.norm(landmarks[FOREHEAD] - landmarks[CHIN])) or 1.0
    mouth = float(np.mean([landmarks[b, 1] - landmarks[a, 1] for a, b in INNER_LIP_PAIRS])) / height
    eyes = float(np.mean([landmarks[b, 1] - landmarks[a, 1] for a, b in EYE_PAIRS])) / height
    return FaceGeometry(max(0.0, mouth), max(0.0, eyes), height, landmarks[list(STABLE)].copy(),
                        landmarks[list(FACE_OVAL)].copy(), float(landmarks[NOSE_TIP, 1]))  # fmt: skip


def frame_loudness(audio: np.ndarray, rate: int, fps: float, num_frames: int, start_frame: int = 0) -> np.ndarray:
    """Loudness of each video frame's slice of `audio`, 0 (LOUDNESS_RANGE_DB under the loud level) to 1.

    The loud level is the 95th percentile of the frames' RMS levels in dB; a frame past the end of
    the audio is silent (0).
    """
    level = np.full(num_frames, -120.0)
    for i in range(num_frames):
        a = int(round((start_frame + i) / fps * rate))
        b = int(round((start_frame + i + 1) / fps * rate))
        piece = audio[a:b]
        if piece.size:
            level[i] = 10 * math.log10(float(np.mean(piece.astype(np.float64) ** 2)) + 1e-12)
    loud = np.percentile(level, 95)
    return np.clip((level - (loud - LOUDNESS_RANGE_DB)) / LOUDNESS_RANGE_DB, 0.0, 1.0)


@dataclass(frozen=True)
class LipSync:
    correlation: float  # Pearson r of mouth aperture with loudness at the best lag, -1..1
    lag: int  # frames; > 0: the mouth moves after the sound, < 0: before it
    mouth_range: float  # 95th minus 5th percentile of the aperture, face heights
    correlations: dict[int, float]  # r at every lag searched


def lip_sync(mouth: np.ndarray, loudness: np.ndarray, max_lag: int) -> LipSync:
    """Correlate mouth[t + lag] with loudness[t] for lags -max_lag..max_lag; the best one wins.

    A mouth that never moves correlates with nothing (r = 0 where the aperture is constant).
    """
    mouth, loudness = np.asarray(mouth, float), np.asarray(loudness, float)
    n = min(len(mouth), len(loudness))
    mouth, loudness = mouth[:n], loudness[:n]
    scores: dict[int, float] = {}
    for lag in range(-max_lag, max_lag + 1):
        a = mouth[max(0, lag) : n + min(0, lag)]
        b = loudness[max(0, -lag) : n - max(0, lag)]
        scores[lag] = _pearson(a, b)
    best = max(scores, key=lambda k: (scores[k], -abs(k)))
    spread = float(np.percentile(mouth, 95) - np.percentile(mouth, 5)) if n else 0.0
    return LipSync(round(scores[best], 4), best, round(spread, 4), {k: round(v, 4) for k, v in scores.items()})


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


@dataclass(frozen=True)
class MouthRest:
    silent_frames: int  # frames of silence at least `margin` frames from any speech
    closed_fraction: float | None  # share of those whose mouth is closed (None: no silence)
    rest: float  # the closed mouth's aperture, face heights


def mouth_at_rest(mouth: np.ndarray, speech: np.ndarray, rest: float, tolerance: float, margin: int) -> MouthRest:
    """Share of silent frames whose aperture is within `tolerance` of the closed mouth's `rest`.

    Frames within `margin` frames of speech are left out: a mouth may open just before a word
    and close just after it.
    """
    speech = np.asarray(speech, bool)
    near = speech.copy()
    for shift in range(1, margin + 1):
        near[shift:] |= speech[:-shift]
        near[:-shift] |= speech[shift:]
    silent = ~near[: len(mouth)]
    count = int(silent.sum())
    if not count:
        return MouthRest(0, None, round(rest, 4))
    closed = np.asarray(mouth)[silent] <= rest + tolerance
    return MouthRest(count, round(float(closed.mean()), 4), round(rest, 4))


@dataclass(frozen=True)
class Blinks:
    count: int
    per_minute: float


def blinks(eyes: np.ndarray, fps: float) -> Blinks:
    """Blinks: runs of frames whose eye aperture is under 65% of its median.

    (The mesh never reports a shut eye as fully closed: at full closure it still gives a third
    to a half of the open eye's aperture, hence 65% rather than a small absolute value.)
    """
    eyes = np.asarray(eyes, float)
    if eyes.size == 0:
        return Blinks(0, 0.0)
    shut = eyes < 0.65 * np.median(eyes)
    count = int(shut[0]) + int(np.sum(shut[1:] & ~shut[:-1]))
    minutes = len(eyes) / fps / 60
    return Blinks(count, round(count / minutes, 2) if minutes else 0.0)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift) that best maps src onto dst."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = float((s**2).sum()) or 1e-12
    a = float((s * d).sum()) / var
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / var
    m = np.array([[a, -b], [b, a]])
    return np.hstack([m, (mu_d - m @ mu_s)[:, None]])


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def landmark_jitter(stable: list[np.ndarray]) -> float:
    """Mean px per frame that stable landmarks move after head motion is removed.

    Each frame's stable points are mapped onto the previous frame's by the best similarity
    transform (the head's motion); what is left is how far they move on their own.
    """
    steps = []
    for prev, cur in zip(stable, stable[1:], strict=False):
        fitted = apply(similarity_fit(cur, prev), cur)
        steps.append(float(np.linalg.norm(fitted - prev, axis=1).mean()))
    return round(float(np.mean(steps)), 4) if steps else 0.0


# --- Appearance: identity (SSIM), colour (delta-E) and sharpness against a reference ---------


@dataclass(frozen=True)
class Reference:
    """The picture a video is compared with (the portrait aligned to the first frame, or that
    frame itself), reduced to what the appearance measures need."""

    stable: np.ndarray  # stable landmarks, px in the video's frame
    box: tuple[int, int, int, int]  # upper-face box x0, y0, x1, y1 in the video's frame
    upper_face: np.ndarray  # grey float32 SSIM_SIZE x SSIM_SIZE
    sharpness: float  # variance of the Laplacian of the upper face
    lab_face: np.ndarray  # mean CIE Lab of the face (inside the face oval)
    lab_background: np.ndarray  # mean CIE Lab outside the dilated face oval
    mouth: float  # aperture of the closed mouth, face heights


def upper_face_box(geometry: FaceGeometry, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Eyes, brows, nose and forehead: the part of the face speech does not move."""
    oval = geometry.oval
    x0, x1 = oval[:, 0].min(), oval[:, 0].max()
    y0, y1 = oval[:, 1].min(), geometry.nose_tip_y
    h, w = shape[:2]
    return (max(0, int(x0)), max(0, int(y0)), min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1))))


def make_reference(rgb: np.ndarray, geometry: FaceGeometry, mouth: float | None = None) -> Reference:
    """A Reference from an image in the video's frame geometry and its face mesh."""
    box = upper_face_box(geometry, rgb.shape)
    x0, y0, x1, y1 = box
    grey = _for_ssim(_grey(rgb[y0:y1, x0:x1]))
    lab_face, lab_background = colour_means(rgb, geometry)
    return Reference(
        stable=geometry.stable, box=box, upper_face=grey, sharpness=_laplacian_variance(grey),
        lab_face=lab_face, lab_background=lab_background, mouth=geometry.mouth if mouth is None else mouth,
    )  # fmt: skip


COLOUR_SIZE = 128  # mean colours are taken on a copy this many pixels on its longer side


def colour_means(rgb: np.ndarray, geometry: FaceGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Mean CIE Lab of the face (inside the face oval) and of the background (outside the oval
    grown by a fifth of the face height), on a small copy: a mean hardly changes with size."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, COLOUR_SIZE / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    mask = np.zeros(small.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(geometry.oval * scale).astype(np.int32)], 1)
    grow = max(3, int(0.2 * geometry.height * scale)) | 1
    background = cv2.dilate(mask, np.ones((grow, grow), np.uint8)) == 0
    lab = _lab(small)
    face = mask > 0
    mean_face = lab[face].mean(0) if face.any() else lab.reshape(-1, 3).mean(0)
    mean_background = lab[background].mean(0) if background.any() else lab.reshape(-1, 3).mean(0)
    return mean_face, mean_background


@dataclass(frozen=True)
class Appearance:
    """One frame against the reference."""

    ssim: float  # upper-face SSIM, aligned for head motion, -1..1 (1: identical)
    delta_e_face: float  # CIE76 distance between the mean Lab colours of the face
    delta_e_background: float  # the same outside the face
    sharpness: float  # variance of the Laplacian of the upper face / the reference's


def appearance(rgb: np.ndarray, geometry: FaceGeometry, reference: Reference) -> Appearance:
    """Compare one frame with the reference: the frame is first aligned to it by the stable
    landmarks, so head motion is not counted as a change of identity."""
    import cv2

    transform = similarity_fit(geometry.stable, reference.stable)
    x0, y0, x1, y1 = reference.box
    shifted = transform.copy()
    shifted[:, 2] -= (x0, y0)
    crop = cv2.warpAffine(rgb, shifted, (max(1, x1 - x0), max(1, y1 - y0)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    grey = _for_ssim(_grey(crop))
    lab_face, lab_background = colour_means(rgb, geometry)
    sharp = _laplacian_variance(grey) / reference.sharpness if reference.sharpness > 0 else 1.0
    return Appearance(
        ssim=round(ssim(grey, reference.upper_face), 4),
        delta_e_face=round(float(np.linalg.norm(lab_face - reference.lab_face)), 3),
        delta_e_background=round(float(np.linalg.norm(lab_background - reference.lab_background)), 3),
        sharpness=round(float(sharp), 4),
    )


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey float images in 0..255: Wang et al.'s Gaussian-window
    SSIM (sigma 1.5, 11x11), what scikit-image's `structural_similarity(gaussian_weights=True,
    use_sample_covariance=False, data_range=255)` computes (tested against it)."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = 5  # the window's radius: the mean leaves out the border, as scikit-image does
    return float(s[pad:-pad, pad:-pad].mean())


def _grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    if rgb.size == 0:
        return np.zeros((SSIM_SIZE, SSIM_SIZE), np.float32)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _for_ssim(grey: np.ndarray) -> np.ndarray:
    """SSIM and sharpness look at the upper face at one fixed size, so faces of any size score
    alike, and sharpness measures the detail a viewer sees rather than codec grain."""
    import cv2

    return cv2.resize(grey, (SSIM_SIZE, SSIM_SIZE), interpolation=cv2.INTER_AREA)


def _laplacian_variance(grey: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB uint8 image, in float (L 0..100)."""
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
