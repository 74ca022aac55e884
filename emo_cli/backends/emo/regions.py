"""Hallo's face-region image and its full/face/lip masks, from the bundled MediaPipe face mesh.

Hallo (hallo/utils/util.py `get_mask`, hallo/datasets/image_processor.py) finds 478 face
landmarks with MediaPipe's FaceLandmarker task file from its download, then builds:

- the face box: the bounding box of the 36 silhouette landmarks, grown about its centre by
  `face_expand_ratio` (1.2) and shifted back inside the image; the lip box: the bounding box of
  the 20 outer-lip landmarks grown by 2.0;
- the face-region image: the face box as a binary image, resized to the render size, 3 channels
  in [0, 1]; it feeds the face locator (and Hallo2's motion-frame patch drop);
- the three region masks: each box shrunk to 64x64, Gaussian-blurred (51 px face, 31 px lip) and
  min-max stretched; "face" is the blurred face minus the blurred lip, "full" (background) is
  255 minus the blurred face; each resized to H/8, H/16, H/32 and H/64 and flattened row-major.

emo-cli uses the face mesh bundled in mediapipe 0.10.21 (`emo_cli.backends.face`) instead of the
FaceLandmarker task file, so nothing is downloaded at run time. Both give the same 468-point
mesh topology (plus irises), so the same landmark indices select the same features; the
landmark positions differ slightly, which moves the box edges by a pixel or so. The arithmetic
after the landmarks (rounding, the region growth, OpenCV resize/blur/normalise, PIL's bilinear
resize) is Hallo's, done in memory instead of through PNG files (lossless, so no difference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emo_cli.errors import InputError

# MediaPipe face-mesh indices (the same in Hallo's FaceLandmarker output).
SILHOUETTE = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
              152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]  # fmt: skip
LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375]
FACE_EXPAND_RATIO = 1.2  # Hallo's default face_expand_ratio
LIP_EXPAND_RATIO = 2.0
MASK_SIZE = 64  # the blurred masks are made at 64x64 whatever the image size
FACE_BLUR = 51
LIP_BLUR = 31
LEVELS = (8, 16, 32, 64)  # the four latent levels: H/8 .. H/64


@dataclass(frozen=True)
class HalloRegions:
    """What Hallo's ImageProcessor returns besides the image and the embedding."""

    face_region: np.ndarray  # (3, H, W) float32 in [0, 1]: the face box, for the face locator
    full_masks: list[np.ndarray]  # per level: (1, h * w) float32, row-major, background
    face_masks: list[np.ndarray]  # per level: face without the lips
    lip_masks: list[np.ndarray]  # per level: the lips


def expand_region(
    region: tuple[float, float, float, float], width: int, height: int, ratio: float
) -> tuple[int, int, int, int]:
    """(min_x, max_x, min_y, max_y) grown by `ratio` about its centre, shifted back inside the
    image; Hallo's `expand_region`, including its floor divisions of the half-sizes."""
    min_x, max_x, min_y, max_y = region
    mid_x, mid_y = (max_x + min_x) // 2, (max_y + min_y) // 2
    side_x, side_y = (max_x - min_x) * ratio, (max_y - min_y) * ratio
    min_x, max_x = mid_x - side_x // 2, mid_x + side_x // 2
    min_y, max_y = mid_y - side_y // 2, mid_y + side_y // 2
    if min_x < 0:
        max_x -= min_x
        min_x = 0
    if max_x > width:
        min_x -= max_x - width
        max_x = width
    if min_y < 0:
        max_y -= min_y
        min_y = 0
    if max_y > height:
        min_y -= max_y - height
        max_y = height
    return round(min_x), round(max_x), round(min_y), round(max_y)


def box_mask(landmarks: np.ndarray, ids: list[int], width: int, height: int, ratio: float) -> np.ndarray:
    """A (height, width) uint8 mask, 255 inside the grown bounding box of the chosen landmarks."""
    points = np.take(landmarks, ids, axis=0)
    lo, hi = np.round(points.min(axis=0)), np.round(points.max(axis=0))
    x0, x1, y0, y1 = expand_region((lo[0], hi[0], lo[1], hi[1]), width, height, ratio)
    mask = np.zeros((height, width), dtype=np.uint8)
    # Clamped at 0: a box larger than the image keeps a negative corner after Hallo's shift, which
    # Python would read as an index from the far end.
    mask[max(round(y0), 0) : round(y1), max(round(x0), 0) : round(x1)] = 255
    return mask


def blurred(mask: np.ndarray, kernel: int) -> np.ndarray:
    """Hallo's `get_blur_mask`: shrink to 64x64, Gaussian blur, stretch to 0..255 (uint8)."""
    import cv2

    small = cv2.resize(mask, (MASK_SIZE, MASK_SIZE))
    blur = cv2.GaussianBlur(small, (kernel, kernel), 0)
    return cv2.normalize(blur, None, 0, 255, cv2.NORM_MINMAX)


def level_masks(mask: np.ndarray, size: int) -> list[np.ndarray]:
    """A 64x64 uint8 mask at the four latent levels of a `size` image: PIL bilinear (torchvision's
    Resize on a PIL image), /255, flattened row-major to (1, h * w)."""
    from PIL import Image

    image = Image.fromarray(mask)
    out = []
    for factor in LEVELS:
        side = size // factor
        if side < 1:
            raise InputError(f"settings.resolution {size} is too small for Hallo's masks (at least 64)")
        resized = image.resize((side, side), Image.Resampling.BILINEAR)
        out.append((np.asarray(resized, dtype=np.float32) / 255.0).reshape(1, -1))
    return out


def hallo_regions_from_landmarks(
    landmarks: np.ndarray, width: int, height: int, size: int, face_expand_ratio: float = FACE_EXPAND_RATIO
) -> HalloRegions:
    """Hallo's face-region image and masks from 478 (or 468) face-mesh landmarks (x, y pixels) of
    a `width` x `height` image rendered at `size` x `size`."""
    from PIL import Image

    face = box_mask(landmarks, SILHOUETTE, width, height, face_expand_ratio)
    lip = box_mask(landmarks, LIPS, width, height, LIP_EXPAND_RATIO)
    face_blur = blurred(face, FACE_BLUR)
    lip_blur = blurred(lip, LIP_BLUR)
    background = ((1.0 - face_blur / 255.0) * 255).astype(np.uint8)
    face_only = np.clip(face_blur.astype(np.int16) - lip_blur.astype(np.int16), 0, 255).astype(np.uint8)
    region = Image.fromarray(face).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return HalloRegions(
        face_region=np.ascontiguousarray(np.asarray(region, dtype=np.float32).transpose(2, 0, 1) / 255.0),
        full_masks=level_masks(background, size),
        face_masks=level_masks(face_only, size),
        lip_masks=level_masks(lip_blur, size),
    )


def hallo_regions(rgb: np.ndarray, size: int, face_expand_ratio: float = FACE_EXPAND_RATIO) -> HalloRegions:
    """Hallo's face-region image and masks of a square RGB portrait rendered at `size`."""
    from emo_cli.backends.face import face_mesh_landmarks

    landmarks = face_mesh_landmarks(rgb, refine=True)
    if landmarks is None:
        raise InputError(
            "no face found by the face mesh: Hallo's face and lip masks need one clearly visible face"
        )
    return hallo_regions_from_landmarks(landmarks, rgb.shape[1], rgb.shape[0], size, face_expand_ratio)
