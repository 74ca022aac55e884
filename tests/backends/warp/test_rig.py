"""The rig's geometry helpers: the mesh's Delaunay triangles and the nearest-inside-cell map."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emo_cli.backends.warp.rig import _delaunay, _nearest_inside


@pytest.mark.parametrize("seed", range(4))
def test_triangles_are_delaunay_and_tile_the_convex_hull(seed):
    points = np.random.default_rng(seed).uniform(10, 400, size=(300, 2))
    triangles = _delaunay(cv2, points)
    a, b, c = (points[triangles[:, i]] for i in range(3))
    areas = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    hull = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
    assert abs(areas.sum() - hull) < 1e-6 * hull  # no triangle lost at the hull
    assert len(triangles) == 2 * len(points) - 2 - len(cv2.convexHull(points.astype(np.float32)))
    # Empty circumcircles: no point lies inside any triangle's circumcircle.
    d = 2 * (a[:, 0] * (b[:, 1] - c[:, 1]) + b[:, 0] * (c[:, 1] - a[:, 1]) + c[:, 0] * (a[:, 1] - b[:, 1]))
    sq = [(p * p).sum(axis=1) for p in (a, b, c)]
    ux = (sq[0] * (b[:, 1] - c[:, 1]) + sq[1] * (c[:, 1] - a[:, 1]) + sq[2] * (a[:, 1] - b[:, 1])) / d
    uy = (sq[0] * (c[:, 0] - b[:, 0]) + sq[1] * (a[:, 0] - c[:, 0]) + sq[2] * (b[:, 0] - a[:, 0])) / d
    radius = np.hypot(a[:, 0] - ux, a[:, 1] - uy)
    gaps = np.hypot(points[None, :, 0] - ux[:, None], points[None, :, 1] - uy[:, None]) - radius[:, None]
    assert gaps.min() > -1e-6 * radius.max()


def test_nearest_inside_cell_and_its_distance():
    inside = np.zeros((60, 80), dtype=bool)
    inside[10:25, 20:50] = True
    inside[45, 70] = True
    distance, nearest = _nearest_inside(cv2, inside)
    assert np.all(inside.ravel()[nearest])
    assert np.all(distance[inside.ravel()] == 0) and np.array_equal(nearest[inside.ravel()], np.flatnonzero(inside))
    ys, xs = np.divmod(np.arange(inside.size), inside.shape[1])
    cells = np.flatnonzero(inside)
    exact = np.hypot(ys[:, None] - ys[cells][None], xs[:, None] - xs[cells][None]).min(axis=1)
    assert np.all(np.abs(distance - exact) <= 0.03 * exact + 1e-6)  # OpenCV's 5x5 mask: within 3%
    to_nearest = np.hypot(ys - ys[nearest], xs - xs[nearest])
    assert np.all(to_nearest <= exact * 1.03 + 1e-6)  # the cell it names is (nearly) the nearest
