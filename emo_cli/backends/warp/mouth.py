"""The mouth interior: where the warped lips part, a cavity, a tongue and two rows of teeth.

Stretching the lips' own pixels over an open mouth looks like rubber, and a portrait's own
teeth cannot follow a jaw; a real open mouth shows a dark cavity, the upper teeth fixed to the
skull under the upper lip, the lower teeth rising from behind the lower lip as the jaw drops,
and the tongue's back lit a little from the front. OpenCV has no such shading, so it is
painted here: a few NumPy expressions over the mouth's bounding box, only on frames where the
lips part (a shut mouth costs nothing), with edges anti-aliased to a sub-pixel.
"""

from __future__ import annotations

import numpy as np

from emo_cli.backends.warp.rig import LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER_LIP

CAVITY = np.array([92.0, 38.0, 42.0], dtype=np.float32)  # inner cheeks in shadow
THROAT = np.array([30.0, 10.0, 13.0], dtype=np.float32)
TONGUE = np.array([186.0, 92.0, 96.0], dtype=np.float32)
TEETH = np.array([222.0, 214.0, 200.0], dtype=np.float32)  # when the portrait shows none


class MouthPainter:
    """Paints the mouth interior into frames, following the rig's inner-lip vertices.

    At rest the inner lips meet on their midline (the rig's rest field shuts a parted mouth);
    the painted region is the gap that opens between them. The upper teeth hang from the rest
    midline, moved only by the head; the lower teeth ride on the jaw; the tongue fills the
    floor of the cavity. A portrait that shows its teeth lends them its colour.
    """

    def __init__(self, rig, rest_frame: np.ndarray) -> None:
        upper_index, lower_index = np.array(UPPER_INNER_LIP), np.array(LOWER_INNER_LIP)
        fields = rig.vertex_fields
        self.upper_fields = fields[:, upper_index].astype(np.float64)  # (fields, 11, 2)
        self.lower_fields = fields[:, lower_index].astype(np.float64)
        self.upper_rest = (rig.landmarks[upper_index] + rig.vertex_rest[upper_index]).astype(np.float64)
        self.lower_rest = (rig.landmarks[lower_index] + rig.vertex_rest[lower_index]).astype(np.float64)
        # The mouth corners (where the lips meet outside), for the gap's pointed ends.
        corners = np.array([MOUTH_LEFT, MOUTH_RIGHT])
        self.corner_fields = fields[:, corners].astype(np.float64)
        self.corner_rest = (rig.landmarks[corners] + rig.vertex_rest[corners]).astype(np.float64)
        self.teeth_px = 0.045 * rig.face_height  # visible height of an upper incisor
        self.lip_cover = 0.006 * rig.face_height
        self.teeth_colour = _teeth_colour(rest_frame, rig.landmarks[upper_index], rig.landmarks[lower_index])

    def lips(self, params: np.ndarray, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower edges of the opened gap (11 points each, corner to corner), moved by
        the fields from `first` on (3: the head alone)."""
        upper, lower = self.upper_rest.copy(), self.lower_rest.copy()
        for k, value in enumerate(np.asarray(params, dtype=np.float64)):  # plain sums: same bits on any CPU
            if value != 0 and k >= first:
                upper += value * self.upper_fields[k]
                lower += value * self.lower_fields[k]
        return upper, lower

    def paint(self, frame: np.ndarray, params: np.ndarray) -> None:
        import cv2

        upper, lower = self.lips(params)
        opening = float(np.mean(lower[3:8, 1] - upper[3:8, 1]))
        if opening < 2.0:
            self._seam(frame, (upper + lower) / 2, 1 - max(opening, 0) / 2)
        if opening < 0.5:
            return
        height, width = frame.shape[:2]
        # The painted gap reaches a little under the upper lip's edge: the portrait's own teeth
        # (or the seam between lip and tooth, at a grid cell's blur) never show along it.
        bulge = np.clip(
            1 - ((upper[:, 0] - upper[:, 0].mean()) / max(np.ptp(upper[:, 0]) / 2, 1.0)) ** 2, 0, 1
        )
        upper = upper - np.outer(np.sqrt(bulge) * min(self.lip_cover, 0.5 * opening), [0.0, 1.0])
        # The gap ends in points a third of the way out to the mouth corners: the photo's own
        # dark corners, which the jaw stretches, stay under the painted cavity.
        corners = self.corner_rest.copy()
        for k, value in enumerate(np.asarray(params, dtype=np.float64)):
            if value != 0:
                corners += value * self.corner_fields[k]
        ends = upper[[0, -1]] + (corners - upper[[0, -1]]) * min(1.0, opening / 6) / 3
        upper = np.concatenate([ends[:1], upper[1:-1], ends[1:]])
        lower = np.concatenate([ends[:1], lower[1:-1], ends[1:]])
        poly = np.concatenate([upper, lower[-2:0:-1]])
        x0 = max(0, int(np.floor(poly[:, 0].min())) - 1)
        y0 = max(0, int(np.floor(poly[:, 1].min())) - 1)
        x1 = min(width, int(np.ceil(poly[:, 0].max())) + 2)
        y1 = min(height, int(np.ceil(poly[:, 1].max())) + 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        # The gap at 4x resolution, averaged down: edges anti-aliased to a quarter pixel.
        fine = np.zeros(((y1 - y0) * 4, (x1 - x0) * 4), dtype=np.uint8)
        cv2.fillPoly(fine, [np.round((poly - [x0, y0]) * 64 + 1.5 * 16).astype(np.int32)], 255,
                     lineType=cv2.LINE_8, shift=4)  # fmt: skip
        coverage = cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32)
        # A narrow slit shows the lips' shadow more than the inside: it fades in over 2 pixels.
        alpha = coverage * np.float32(min(1.0, opening / 2.0) / 255)

        xs = np.arange(x0, x1, dtype=np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        top = np.interp(xs, *_sorted(upper)).astype(np.float32)
        bottom = np.interp(xs, *_sorted(lower)).astype(np.float32)
        skull, _ = self.lips(params, first=3)  # the rest midline, where the head has moved it
        rest_line = np.interp(xs, *_sorted(skull)).astype(np.float32)
        gap = np.maximum(bottom - top, 1e-3)
        centre_x = (upper[0, 0] + upper[-1, 0]) / 2
        half_w = max(abs(upper[-1, 0] - upper[0, 0]) / 2, 1.0)
        across = np.clip(1 - ((xs - centre_x) / half_w) ** 2, 0, 1)  # 1 mid-mouth, 0 at the corners
        soft = lambda d: np.clip(d + 0.5, 0, 1)  # noqa: E731  distance (px) past an edge -> coverage

        # Cavity: darkest in the middle, behind the teeth.
        depth = np.clip((ys - top) / gap, 0, 1)
        colour = CAVITY + (THROAT - CAVITY) * (4 * depth * (1 - depth) * (0.4 + 0.6 * across))[..., None]
        # Tongue: a dome on the cavity floor that rises into view as the mouth opens.
        drop = float(np.mean(bottom - rest_line)) if bottom.size else 0.0
        rise = np.minimum(0.45 * gap, 0.15 * self.teeth_px + 0.35 * max(drop, 0))
        tongue_top = bottom - rise * np.sqrt(across)
        tongue = soft(ys - tongue_top) * np.clip(across * 3, 0, 1) * 0.9
        # Its back, in shadow, meets the cavity; its front catches the light.
        lit = 0.3 + 0.4 * np.clip((ys - tongue_top) / np.maximum(bottom - tongue_top, 1), 0, 1) ** 0.7
        colour += (TONGUE * lit[..., None] - colour) * tongue[..., None]
        # Lower teeth: ride on the jaw behind the lower lip; their edges show above it once the
        # jaw has dropped further than the lip hides them.
        shade = 0.55 + 0.45 * across**0.5
        lower_top = (
            bottom
            - np.clip(0.35 * (bottom - rest_line) - 0.1 * self.teeth_px, 0, 0.3 * self.teeth_px) * across
        )
        lower_teeth = soft(ys - lower_top) * soft(bottom + 1 - ys) * np.clip(across * 2 - 0.3, 0, 1)
        lit = 0.78 + 0.17 * np.clip((ys - lower_top) / max(0.2 * self.teeth_px, 1.0), 0, 1)
        colour += (self.teeth_colour * (lit * shade)[..., None] - colour) * lower_teeth[..., None]
        # Upper teeth: hang from the skull, a little below the rest midline, with their edges
        # darker towards the corners and faint gaps between the incisors.
        edge = rest_line + 0.25 * self.teeth_px * np.sqrt(across)
        upper_teeth = soft(edge - ys) * np.clip(across * 2.5, 0, 1)
        gaps = 0.9 + 0.1 * np.abs(np.cos(np.pi * (xs - centre_x) / max(0.55 * self.teeth_px, 1.0))) ** 0.3
        lit = 1 - 0.25 * np.clip((ys - top) / max(self.teeth_px, 1.0), 0, 1)  # lit under the lip
        colour += (self.teeth_colour * (shade * gaps * lit)[..., None] - colour) * upper_teeth[..., None]
        region = frame[y0:y1, x0:x1]
        a = alpha[..., None]
        frame[y0:y1, x0:x1] = (region + (colour - region) * a + 0.5).astype(np.uint8)

    def _seam(self, frame: np.ndarray, line: np.ndarray, strength: float) -> None:
        """The shadow where shut lips meet: a soft line along their midline, fading at the corners."""
        import cv2

        height, width = frame.shape[:2]
        x0 = max(0, int(np.floor(line[:, 0].min())) - 2)
        y0 = max(0, int(np.floor(line[:, 1].min())) - 2)
        x1 = min(width, int(np.ceil(line[:, 0].max())) + 3)
        y1 = min(height, int(np.ceil(line[:, 1].max())) + 3)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        fine = np.zeros(((y1 - y0) * 4, (x1 - x0) * 4), dtype=np.uint8)
        thickness = max(2, int(round(4 * max(1.0, 0.006 * self.teeth_px / 0.045))))
        cv2.polylines(fine, [np.round((line - [x0, y0]) * 64 + 1.5 * 16).astype(np.int32)], False, 255,
                      thickness=thickness, lineType=cv2.LINE_8, shift=4)  # fmt: skip
        shadow = cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        xs = np.arange(x0, x1, dtype=np.float32)
        centre_x, half_w = (line[0, 0] + line[-1, 0]) / 2, max(abs(line[-1, 0] - line[0, 0]) / 2, 1.0)
        fade = 0.6 + 0.4 * np.clip(1 - ((xs - centre_x) / half_w) ** 2, 0, 1)
        dim = 1 - 0.3 * strength * shadow * fade
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = (region * dim[..., None] + 0.5).astype(np.uint8)


def _teeth_colour(frame: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The portrait's own teeth colour, where its parted lips show some, else a neutral white."""
    import cv2

    mask = np.zeros(frame.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(np.concatenate([upper, lower[-2:0:-1]])).astype(np.int32)], 1)
    pixels = frame[mask > 0].astype(np.float32)
    if len(pixels) < 20:
        return TEETH
    brightness = pixels.sum(axis=1)
    bright = pixels[brightness >= np.percentile(brightness, 70)]
    colour = np.median(bright, axis=0)
    # Teeth are light and nearly grey: anything else (a tongue, a shadow) is not teeth.
    if colour.min() < 140 or colour.max() - colour.min() > 60:
        return TEETH
    return (0.5 * colour + 0.5 * TEETH).astype(np.float32)


def _sorted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]
