"""Closing eyelids: the part of the eye the lid covers is painted with the lid's own skin.

Warping the skin above the eye down over it smears the lid, drags the lashes into a jagged
band and leaves a ghost of the iris where the sampling blends across the lid edge. A real
closed lid is smooth skin, a little darker towards its edge, ending in one dark lash line.
So, on the frames of a blink (a few percent of them), each eye pixel the lid covers takes the
colour of the portrait's lid skin in its column (between the lid line and the crease), shaded
towards the edge, and the edge is drawn as the lashes, anti-aliased. Uncovered pixels keep the
portrait's eye (the warp leaves them in place). Nothing in OpenCV paints this; it is a few
NumPy expressions over the eye's pixels.
"""

from __future__ import annotations

import numpy as np

from emo_cli.backends.warp.rig import EYES


class EyelidPainter:
    """Paints the covered part of both eyes for a blink value (0 open .. 1 shut)."""

    def __init__(self, rig, rest_frame: np.ndarray) -> None:
        x0, y0, x1, _ = rig.roi
        width = x1 - x0
        mesh = rig.landmarks
        self.eyes = []
        for (upper, _lower, crease), (pixels, gap, depth, _lid) in zip(EYES, rig.eye_pixels, strict=True):
            px = (x0 + pixels % width).astype(np.int64)
            py = (y0 + pixels // width).astype(np.int64)
            top = _polyline_y(mesh[upper], px)
            fold = np.minimum(_polyline_y(mesh[crease], px), top - 1.0)
            # The lid's skin: the portrait's skin just above the crease (the lid's own strip
            # between lid line and crease is lashes and shadow in most photos), one colour per
            # eye, a little darker towards the corners.
            band = []
            for lift in (0.2, 0.4, 0.6):
                ys = np.clip(np.round(fold - lift * gap.max()).astype(np.int64), 0, rest_frame.shape[0] - 1)
                band.append(rest_frame[ys, np.clip(px, 0, rest_frame.shape[1] - 1)].astype(np.float32))
            band = np.concatenate(band)
            bright = band.sum(axis=1) >= np.percentile(band.sum(axis=1), 30)  # no lash or brow hairs
            centre, half = (px.min() + px.max()) / 2, max((px.max() - px.min()) / 2, 1)
            corners = 0.9 + 0.1 * np.clip(1 - ((px - centre) / half) ** 2, 0, 1)
            skin = np.median(band[bright], axis=0)[None, :] * corners[:, None].astype(np.float32)
            # Near the lid line the painted lid blends into the warped skin above it.
            blend = np.clip(depth * gap / 3.0 + 0.25, 0, 1).astype(np.float32)
            self.eyes.append((py, px, gap.astype(np.float32), depth.astype(np.float32), skin, blend))
        self.lash = _lash_colour(rest_frame, mesh)
        self.lash_px = max(0.8, 0.007 * rig.face_height)

    def paint(self, frame: np.ndarray, blink: float) -> None:
        if blink <= 0:
            return
        edge = np.float32(1.1 * blink)  # the lid edge, in eye depths: past the lower lid when shut
        for py, px, gap, depth, skin, blend in self.eyes:
            below_top = (edge - depth) * gap  # pixels from the lid edge up into the lid
            cover = np.clip(below_top + 0.5, 0, 1) * blend
            if not cover.any():
                continue
            lid = skin * (0.86 + 0.1 * np.clip(below_top / np.maximum(0.5 * gap, 1), 0, 1))[:, None]
            lashes = np.clip(self.lash_px + 0.5 - below_top, 0, 1) * 0.9
            lid += (self.lash - lid) * lashes[:, None]
            seen = frame[py, px].astype(np.float32)
            frame[py, px] = (seen + (lid - seen) * cover[:, None] + 0.5).astype(np.uint8)


def _lash_colour(frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """The darkest tenth of the pixels along both upper lid lines: the lashes' colour."""
    samples = []
    for upper, _, _ in EYES:
        line = mesh[upper]
        for t in np.linspace(0, 1, 40):
            x, y = (
                np.interp(t * (len(line) - 1), np.arange(len(line)), line[:, 0]),
                np.interp(t * (len(line) - 1), np.arange(len(line)), line[:, 1]),
            )
            for dy in (-1, 0, 1):
                yy = int(np.clip(round(y + dy), 0, frame.shape[0] - 1))
                samples.append(frame[yy, int(np.clip(round(x), 0, frame.shape[1] - 1))])
    samples = np.array(samples, dtype=np.float32)
    dark = samples[samples.sum(axis=1) <= np.percentile(samples.sum(axis=1), 10)]
    return np.median(dark, axis=0).astype(np.float32)


def _polyline_y(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    order = np.argsort(points[:, 0])
    return np.interp(x, points[order, 0], points[order, 1])
