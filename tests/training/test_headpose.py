"""Head speed from mesh points, the speed table, and how clips are cut from a face track."""

from __future__ import annotations

import numpy as np
import pytest

from emo_cli.training.headpose import (
    RIGID_LANDMARKS,
    fit_speed_table,
    head_speeds,
    rotation_angle,
    speed_for_head_motion,
)
from emo_cli.training.tracking import FrameFaces, crop_for, plan_clips


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


@pytest.mark.parametrize("degrees", [0.0, 0.5, 3.0, 25.0])
def test_rotation_angle_is_exact_under_scale_and_translation(degrees):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(40, 3)) * 50
    moved = 1.3 * points @ _rotation(rng.normal(size=3), degrees).T + [10, -4, 7]
    assert rotation_angle(points, moved) == pytest.approx(degrees, abs=1e-6)


def test_head_speeds_ignore_the_mouth_and_follow_a_turn_about_any_axis():
    rng = np.random.default_rng(2)
    mesh = rng.normal(size=(478, 3)) * 40
    axis = np.array([0.2, 1.0, 0.1])  # mostly a yaw: the out-of-plane case
    frames = np.stack([mesh @ _rotation(axis, 1.5 * t).T for t in range(12)])
    mouth = [i for i in range(478) if i not in RIGID_LANDMARKS]
    frames[:, mouth] += rng.normal(size=(12, len(mouth), 3)) * 8  # speech moves the rest of the face
    assert head_speeds(frames) == pytest.approx(np.full(12, 1.5), abs=1e-4)


def test_speed_table_maps_head_motion_to_the_data_quantiles():
    speeds = np.random.default_rng(3).gamma(2.0, 0.5, size=5000)
    table = fit_speed_table(speeds, buckets=9)
    assert speed_for_head_motion(table, 0.5) == pytest.approx(np.median(speeds), rel=1e-3)
    assert speed_for_head_motion(table, 0.9) == pytest.approx(np.quantile(speeds, 0.9), rel=1e-3)
    assert speed_for_head_motion(table, 0) == pytest.approx(speeds.min(), abs=1e-6)
    centers, edges = np.array(table["buckets"]["centers"]), np.array(table["buckets"]["edges"])
    assert len(centers) == 9 and np.all(np.diff(centers) > 0)
    # Equal-mass buckets: each holds a ninth of the frames.
    counts = np.histogram(speeds, bins=edges)[0]
    assert np.all(np.abs(counts - 5000 / 9) <= 2)


def _frame(box=None, faces=1, cut=False):
    return FrameFaces(box=box, faces=faces if box is not None else 0, cut=cut)


def test_clips_drop_faceless_and_multi_face_spans_and_split_at_cuts():
    box = (100.0, 100.0, 160.0, 170.0)
    frames = (
        [_frame(box) for _ in range(30)]  # clip 0-30
        + [_frame(box, faces=2) for _ in range(5)]  # a second person walks in
        + [_frame(box) for _ in range(10)]  # too short alone (min 25)
        + [_frame(None) for _ in range(5)]  # no face
        + [_frame(box) for _ in range(40)]
        + [_frame(box, cut=True)] + [_frame(box) for _ in range(59)]  # a cut, then a long shot: split in two
    )
    clips, stats = plan_clips(frames, 640, 360, min_frames=25, max_frames=50)
    assert [(c.start, c.stop) for c in clips] == [(0, 30), (50, 90), (90, 120), (120, 150)]
    assert (stats.multi_face, stats.no_face, stats.cuts, stats.short) == (5, 5, 1, 10)
    holed = [_frame(box) for _ in range(30)] + [FrameFaces(None, 0, gap=True)] * 10 + [_frame(box) for _ in range(30)]
    clips, stats = plan_clips(holed, 640, 360, min_frames=25, max_frames=50)
    assert [(c.start, c.stop) for c in clips] == [(0, 30), (40, 70)] and stats.gaps == 10 and stats.no_face == 0
    # Faces 70 px tall make 175 px crops: too small for 512 px training (more than 2x enlarged).
    clips, stats = plan_clips(frames, 640, 360, min_frames=25, max_frames=50, min_side=256)
    assert clips == [] and stats.small_face == 130


def test_cuts_are_found_by_the_picture_or_by_the_face_box_jumping():
    from skimage import data

    from emo_cli.training.tracking import colour_histogram, is_cut

    astronaut, cat = data.astronaut(), data.chelsea()
    box = (100.0, 100.0, 160.0, 170.0)
    same = colour_histogram(astronaut)
    assert not is_cut(same, colour_histogram(np.roll(astronaut, 3, axis=1)), box, (103.0, 100.0, 163.0, 170.0))
    assert is_cut(same, colour_histogram(cat), box, box)  # another shot
    assert is_cut(same, same, box, (400.0, 100.0, 460.0, 170.0))  # the face moved half the frame
    assert is_cut(same, same, box, (90.0, 90.0, 190.0, 210.0))  # the face doubled: another framing
    assert not is_cut(same, same, None, box)  # a face appearing is not a cut


def test_crop_holds_the_whole_track_and_stays_inside_the_frame():
    boxes = np.array([[100, 50, 160, 120], [220, 60, 280, 130]], dtype=float)
    x0, y0, side = crop_for(boxes, 640, 360)
    assert x0 <= 100 and x0 + side >= 280 and y0 >= 0 and y0 + side <= 360
    x0, y0, side = crop_for(np.array([[0, 0, 300, 330]], dtype=float), 640, 360)
    assert side == 360 and y0 == 0 and x0 >= 0
