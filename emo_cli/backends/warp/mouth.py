"""The mouth interior: where the warped lips part, a dark cavity with a hint of teeth.

Stretching the lips' own pixels over an open mouth looks like rubber; a real open mouth shows
a dark cavity, the upper teeth under the upper lip and a little of the lower ones.
"""

from __future__ import annotations

import numpy as np

from emo_cli.backends.warp.rig import LOWER_INNER_LIP, UPPER_INNER_LIP

CAVITY = np.array([96.0, 42.0, 44.0], dtype=np.float32)  # inner lips and tongue, in shadow
THROAT = np.array([34.0, 12.0, 14.0], dtype=np.float32)
UPPER_TEETH = np.array([214.0, 208.0, 196.0], dtype=np.float32)
LOWER_TEETH = np.array([168.0, 160.0, 150.0], dtype=np.float32)


class MouthPainter:
    """Paints the mouth interior into frames, following the rig's inner-lip vertices.

    The painted region is the gap that opens between where the upper and the lower inner lips
    meet at rest (their midline) as the jaw drops. A portrait that already shows its teeth
    keeps them (they move with the lips) and only the new gap is dark; a closed-mouth portrait
    gets a hint of teeth under the upper lip.
    """

    def __init__(self, rig, face_height: float) -> None:
        upper_index, lower_index = np.array(UPPER_INNER_LIP), np.array(LOWER_INNER_LIP)
        fields = rig.vertex_fields
        self.upper_fields = fields[:, upper_index].astype(np.float64)  # (fields, 11, 2)
        self.lower_fields = fields[:, lower_index].astype(np.float64)
        upper, lower = rig.landmarks[upper_index], rig.landmarks[lower_index]
        self.midline = ((upper + lower) / 2).astype(np.float64)
        rest_gap = float(np.mean(lower[3:8, 1] - upper[3:8, 1]))
        self.teeth_px = 0.035 * face_height
        self.teeth = float(np.clip(1 - rest_gap / (0.025 * face_height), 0, 1))

    def lips(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower edges of the opened gap (11 points each, corner to corner)."""
        upper, lower = self.midline.copy(), self.midline.copy()
        for k, value in enumerate(np.asarray(params, dtype=np.float64)):  # plain sums: same bits on any CPU
            if value != 0:
                upper += value * self.upper_fields[k]
                lower += value * self.lower_fields[k]
        return upper, lower

    def paint(self, frame: np.ndarray, params: np.ndarray) -> None:
        import cv2

        upper, lower = self.lips(params)
        opening = float(np.mean(lower[3:8, 1] - upper[3:8, 1]))
        if opening < 0.75:
            return
        height, width = frame.shape[:2]
        poly = np.concatenate([upper, lower[-2:0:-1]])
        x0 = max(0, int(np.floor(poly[:, 0].min())) - 1)
        y0 = max(0, int(np.floor(poly[:, 1].min())) - 1)
        x1 = min(width, int(np.ceil(poly[:, 0].max())) + 2)
        y1 = min(height, int(np.ceil(poly[:, 1].max())) + 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillPoly(
            mask, [np.round((poly - [x0, y0]) * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4
        )
        alpha = mask.astype(np.float32) * np.float32(min(1.0, opening / 3.0) / 255)

        xs = np.arange(x0, x1, dtype=np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        top = np.interp(xs, *_sorted(upper)).astype(np.float32)
        bottom = np.interp(xs, *_sorted(lower)).astype(np.float32)
        depth = np.clip((ys - top) / np.maximum(bottom - top, 1e-3), 0, 1)
        depth = 4 * depth * (1 - depth)  # 0 at the lips, 1 in the middle
        centre_x = (upper[0, 0] + upper[-1, 0]) / 2
        half_w = max(abs(upper[-1, 0] - upper[0, 0]) / 2, 1.0)
        across = np.clip(1 - ((xs - centre_x) / half_w) ** 2, 0, 1)  # teeth fade towards the corners
        colour = CAVITY + (THROAT - CAVITY) * depth[..., None]
        if self.teeth > 0:
            # Upper teeth: a band under the upper lip, shaded towards its edge and the corners,
            # with faint gaps between teeth; a thinner, darker row of lower teeth.
            below_lip = ys - top
            height = np.minimum(0.3 * (bottom - top), self.teeth_px) * across
            band = np.clip((height - below_lip) / 1.2, 0, 1) * self.teeth
            shade = 0.7 + 0.3 * np.clip(1 - below_lip / np.maximum(height, 1e-3), 0, 1)
            gaps = 0.9 + 0.1 * np.abs(np.cos(np.pi * (xs - centre_x) / max(self.teeth_px * 0.8, 1.0))) ** 0.25
            upper = UPPER_TEETH * (shade * gaps * (0.8 + 0.2 * across))[..., None]
            low = np.clip((0.4 * height - (bottom - ys)) / 1.2, 0, 1) * (0.7 * self.teeth)
            colour += (upper - colour) * band[..., None]
            colour += (LOWER_TEETH - colour) * low[..., None]
        region = frame[y0:y1, x0:x1]
        a = alpha[..., None]
        frame[y0:y1, x0:x1] = (region + (colour - region) * a + 0.5).astype(np.uint8)


def _sorted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]
