"""Head rotation speed from the 3-D face mesh, and speed buckets fitted to a dataset.

The speed of frame t is the angle of the rigid rotation (Kabsch/Umeyama: least squares over
rotation, scale and translation) that carries the rigid landmarks of frame t - SPEED_SPAN onto
those of frame t + SPEED_SPAN, divided by the 2 * SPEED_SPAN frames between them: a central
difference. The face mesh jitters by a few tenths of a degree from frame to frame, and a
speed is a magnitude, so jitter only ever adds to it; spreading the difference over +-2 frames
(0.16 s) cuts that error by a third against +-1 frame (`python benchmarks/dataset_prepare.py
--seconds 10`, a roll on a 3 s sine: median error 0.08 against 0.13 degrees/frame, correlation
with the true speed 0.96 against 0.88). +-3 frames does better still on that slow sine (0.05,
0.98) but spans a quarter of a second, which blurs a quick nod. Frames near a clip's ends take the
widest difference that fits. Only points that move with the skull are used: forehead, nose,
eye corners and temples; the jaw, lips, eyelids and brows move on their own.

Written here with numpy rather than taken from a library: the fit is ten lines of SVD, and the
libraries that have it (scipy's `Rotation.align_vectors`, scikit-image's `estimate_transform`)
are not runtime dependencies of emo-cli.
"""

from __future__ import annotations

import numpy as np

# mediapipe face-mesh indices that move with the skull (canonical face model numbering).
RIGID_LANDMARKS = (
    1, 4, 5, 6, 195, 197, 168,  # nose tip to bridge
    8, 9, 10, 151,  # forehead midline
    33, 133, 263, 362,  # outer and inner eye corners
    98, 327, 129, 358,  # sides of the nose
    127, 356, 162, 389, 21, 251, 54, 284, 103, 332, 67, 297, 109, 338,  # temples and upper forehead
)  # fmt: skip

SPEED_UNIT = "degrees/frame"
SPEED_SPAN = 2  # frames either side of the central difference
PERCENTILES = 101  # the speed table: percentiles 0, 1, ..., 100


def rotation_angle(source: np.ndarray, target: np.ndarray) -> float:
    """Degrees of the best rigid rotation (with uniform scale) carrying `source` onto `target`.

    Both are (N, 3) corresponding points. Umeyama's closed form: the rotation that maximises
    trace(R^T H) for the centred cross-covariance H, with the reflection fixed.
    """
    p = source - source.mean(axis=0)
    q = target - target.mean(axis=0)
    u, _, vt = np.linalg.svd(p.T @ q)
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    cosine = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def head_speeds(landmarks: np.ndarray, span: int = SPEED_SPAN) -> np.ndarray:
    """Per-frame head rotation speed (degrees per frame) of a clip's (T, N, 3) mesh points."""
    frames = landmarks.shape[0]
    if frames < 2:
        return np.zeros(frames, dtype=np.float32)
    rigid = landmarks[:, RIGID_LANDMARKS, :].astype(np.float64)
    speeds = np.empty(frames, dtype=np.float64)
    for t in range(frames):
        reach = max(1, min(span, t, frames - 1 - t))  # symmetric where it fits
        a, b = max(0, t - reach), min(frames - 1, t + reach)
        speeds[t] = rotation_angle(rigid[a], rigid[b]) / (b - a)
    return speeds.astype(np.float32)


def fit_speed_table(speeds: np.ndarray, buckets: int) -> dict:
    """The dataset's speed distribution: percentiles and `buckets` equal-mass speed buckets.

    `percentiles[i]` is the speed below which i % of the frames lie, so a rendering setting
    `head_motion` in [0, 1] maps to a speed by interpolating this table at 100 * head_motion
    (see `speed_for_head_motion`). Bucket i covers the quantiles [i / k, (i + 1) / k]: its
    centre is the speed at the middle quantile and its radius half its width, the form the speed
    encoder's bucket activations take.
    """
    speeds = np.asarray(speeds, dtype=np.float64)
    if speeds.size == 0:
        raise ValueError("no speeds to fit")
    percentiles = np.percentile(speeds, np.linspace(0, 100, PERCENTILES))
    edges = np.quantile(speeds, np.linspace(0, 1, buckets + 1))
    centers = np.quantile(speeds, (np.arange(buckets) + 0.5) / buckets)
    # A bucket of zero width (many identical speeds) still needs a radius to divide by.
    floor = max(1e-3, float(edges[-1] - edges[0]) / (100 * buckets))
    radii = np.maximum((edges[1:] - edges[:-1]) / 2, floor)
    return {
        "unit": SPEED_UNIT,
        "frames": int(speeds.size),
        "percentiles": _rounded(percentiles),
        "buckets": {"edges": _rounded(edges), "centers": _rounded(centers), "radii": _rounded(radii)},
    }


def speed_for_head_motion(table: dict, head_motion: float) -> float:
    """The head speed (the table's unit) at quantile `head_motion` (0 = stillest, 1 = liveliest)."""
    percentiles = np.asarray(table["percentiles"], dtype=np.float64)
    q = float(np.clip(head_motion, 0.0, 1.0)) * (len(percentiles) - 1)
    return float(np.interp(q, np.arange(len(percentiles)), percentiles))


def _rounded(values: np.ndarray) -> list[float]:
    # Six decimals of a degree: far below the mesh's noise, and the JSON stays readable.
    return [round(float(v), 6) for v in values]
