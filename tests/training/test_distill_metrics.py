"""The distillation benchmark's measures (benchmarks/train_distill.py): the mouth aperture reads an
open mouth as open, the lagged correlation finds a known lag, controls with no signal read ~0."""

from __future__ import annotations

import sys

import numpy as np
from factories import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import train_distill as td  # noqa: E402


def face_landmarks(size: int = 64) -> np.ndarray:
    """478 face-mesh points, all at the centre except the inner lips and mouth corners."""
    points = np.full((478, 3), size / 2, dtype=np.float32)
    points[13, :2] = (32, 40)  # upper inner lip
    points[14, :2] = (32, 41)  # lower inner lip
    for index, x in ((61, 24), (78, 25), (291, 40), (308, 39)):
        points[index, :2] = (x, 40.5)
    return points


def mouth_frames(openings: np.ndarray, size: int = 64) -> np.ndarray:
    """Skin-coloured frames with a dark cavity under the inner lips, `opening` pixels tall."""
    frames = np.full((len(openings), size, size, 3), (200, 150, 130), dtype=np.uint8)
    for frame, opening in zip(frames, openings, strict=True):
        frame[40 : 40 + int(opening), 27:37] = (40, 15, 18)
    return frames


def test_mouth_box_spans_the_corners_and_room_below_the_lips():
    x0, y0, x1, y1 = td.mouth_box(face_landmarks(), 64)
    assert 24 <= x0 < 28 and 36 < x1 <= 40
    assert y0 < 40 and y1 >= 46
    assert td.mouth_box(face_landmarks() * 0, 64)[2] > 0  # degenerate landmarks still give a box


def test_aperture_grows_with_the_opening():
    box = td.mouth_box(face_landmarks(), 64)
    values = td.aperture(mouth_frames(np.array([0, 1, 2, 3, 4, 5])), box)
    assert np.all(np.diff(values) > 0)


def test_lagged_correlation_finds_the_lag_and_reads_noise_as_zero():
    rng = np.random.default_rng(0)
    jaw = np.convolve(rng.random(300), np.ones(5) / 5, mode="same")
    box = td.mouth_box(face_landmarks(), 64)
    # The mouth follows the jaw two frames late (aperture[t] = jaw[t - 2]).
    late = td.aperture(mouth_frames(np.round(np.concatenate([[0, 0], jaw[:-2]]) * 8)), box)
    r, lag = td.lagged_r(late, jaw)
    assert lag == 2 and r > 0.9
    rows = [td.curves_r(late, jaw, jaw)]
    summary = td.summarise(rows)
    assert summary["lag_jaw"] == 2 and summary["r_jaw"] > 0.9
    unrelated = td.aperture(mouth_frames(np.round(rng.random(300) * 6)), box)
    assert abs(td.lagged_r(unrelated, jaw)[0]) < 0.2
    assert td.pearson(np.ones(10), jaw[:10]) == 0.0  # a still mouth: no correlation, not nan


def test_level_db_follows_loudness():
    t = np.arange(16000) / 16000
    audio = np.sin(2 * np.pi * 220 * t) * np.where(t < 0.5, 0.01, 0.5)
    level = td.level_db(audio.astype(np.float32), 25)
    assert level[:10].max() < level[15:].min() - 20


def test_high_pass_removes_a_slow_drift_and_keeps_fast_motion():
    t = np.arange(200)
    fast = np.sin(2 * np.pi * t / 8)
    drift = t / 20.0
    assert abs(td.pearson(td.high_pass(drift + fast), fast)) > 0.95
    assert np.abs(td.high_pass(drift)).max() < 1e-9
