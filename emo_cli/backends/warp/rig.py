"""The face rig: the portrait framed for output, its face mesh, and the displacement fields.

Built once per job. The rig's rest state is a closed mouth: where the photo's lips are parted
(a smile showing teeth), a fixed "rest" field brings them together over the teeth, stretching
the lips' own pixels (the upper lip down, the lower lip and a little of the jaw up), so jaw 0
is a shut mouth on every portrait. Each motion (jaw, lip width, blink, head roll and shift) is
a linear displacement field over a region of interest (ROI) around the head: values are set
on the mesh vertices, interpolated inside the mesh's Delaunay triangles (barycentric, i.e.
piecewise affine), carried outward from the mesh and feathered to zero with a cosine ramp, so
the warped region has no seam. A frame's field is then a weighted sum of the fields, an upsample and a
`cv2.remap`. Everything here is OpenCV and NumPy (OpenCV's Subdiv2D triangulates, its distance
transform finds the nearest mesh cell): SciPy's import alone took longer than building the rig.

The fields are "content displacements": the output pixel x shows the portrait at x - field(x).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.errors import InputError

log = logging.getLogger(__name__)

# Face-mesh landmark indices (mediapipe's canonical 468-point mesh).
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
UPPER_OUTER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LOWER_OUTER_LIP = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
MOUTH_HOLE = UPPER_INNER_LIP + LOWER_INNER_LIP[-2:0:-1]
EYES = (  # (upper lid, lower lid, crease above), each from corner to corner
    ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133],
     [247, 30, 29, 27, 28, 56, 190]),
    ([263, 466, 388, 387, 386, 385, 384, 398, 362], [263, 249, 390, 373, 374, 380, 381, 382, 362],
     [467, 260, 259, 257, 258, 286, 414]),
)  # fmt: skip
FOREHEAD, CHIN, MOUTH_LEFT, MOUTH_RIGHT = 10, 152, 61, 291
JAW_LINE = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454]
MESH_POINTS = 468

MIN_FACE_PX = 48  # smaller faces have too few pixels to animate
CROP_FACE_HEIGHTS = 2.3  # crop side, in face heights (forehead to chin): head and shoulders
JAW_OPEN = 0.08  # wide-open jaw drop, in face heights
LIP_SPREAD = 0.2  # mouth-corner travel at full spread (or rounding), in half mouth widths
LIP_THINNING = 0.3  # spread lips thin (rounded ones purse) by this share of their height
JAW_CLOSING = 0.3  # of a parted rest mouth's gap, the share the jaw closes (the lips do the rest)
SEAM_OVERLAP = 0.003  # how far past the midline each lip of a shut mouth presses, in face heights
FEATHER = 0.35  # fade-out distance of the face fields beyond the mesh, in face heights
NECK_FADE = 0.2  # the head's motion fades out this far below the jaw line, in face heights
NUM_FIELDS = 6  # jaw, width, blink, roll, shift_x, shift_y


@dataclass(frozen=True)
class Framing:
    """The output frame as a window of a larger canvas (so head motion has pixels to pull in)."""

    canvas: np.ndarray  # uint8 RGB
    margin: int  # the frame is canvas[margin:margin + height, margin:margin + width]
    width: int
    height: int
    landmarks: np.ndarray  # (478, 2) in frame pixels


def analyse_portrait(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Face-mesh landmarks (478, 2) of the largest face in `rgb`, in its pixels.

    Raises:
        InputError: no face, a face too small to animate, or one the mesh cannot follow.
    """
    import cv2

    from emo_cli.backends.face import detect_faces, face_mesh_landmarks

    faces = detect_faces(rgb)
    if not faces:
        raise InputError(
            f"no face found in {path}; use a photo with one clearly visible, roughly frontal human face "
            f"at least {MIN_FACE_PX} pixels wide"
        )
    face = faces[0]
    if len(faces) > 1:
        log.info("%d faces found in %s; animating the largest (%.0f px wide)", len(faces), path, face.width)
    if max(face.width, face.height) < MIN_FACE_PX:
        raise InputError(
            f"the face in {path} is only {face.width:.0f}x{face.height:.0f} pixels; "
            f"the warp backend needs at least {MIN_FACE_PX} pixels: use a closer or larger portrait"
        )
    # The mesh runs on a square around the chosen face, so it follows that face and no other.
    side = 2.2 * max(face.width, face.height)
    cx, cy = face.center
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = int(round(side))
    pad = max(0, -x0, -y0, x0 + size - rgb.shape[1], y0 + size - rgb.shape[0])
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
    patch = padded[y0 + pad : y0 + pad + size, x0 + pad : x0 + pad + size]
    scale = 384 / size
    patch = cv2.resize(patch, (384, 384), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    points = face_mesh_landmarks(patch)
    if points is None:
        raise InputError(
            f"no face found in {path}: a face-like region was detected but the face mesh cannot follow it; "
            "use a photo of a human face, roughly frontal"
        )
    return points / scale + np.array([x0, y0])


def frame_portrait(rgb: np.ndarray, landmarks: np.ndarray, framing: str, resolution: int) -> Framing:
    """The output framing: a square head-and-shoulders crop, or the full image at even size."""
    import cv2

    height, width = rgb.shape[:2]
    mesh = landmarks[:MESH_POINTS]
    if framing == "full":
        out_w, out_h = width - width % 2, height - height % 2
        margin = max(8, int(0.06 * max(out_w, out_h)))
        canvas = cv2.copyMakeBorder(rgb[:out_h, :out_w], margin, margin, margin, margin, cv2.BORDER_REPLICATE)
        return Framing(canvas, margin, out_w, out_h, landmarks.copy())

    face_h = float(np.linalg.norm(mesh[CHIN] - mesh[FOREHEAD])) * 1.15
    lo, hi = mesh.min(axis=0), mesh.max(axis=0)
    cx, cy = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2 + 0.18 * face_h
    side = min(CROP_FACE_HEIGHTS * face_h, float(min(width, height)))
    x0 = float(np.clip(cx - side / 2, 0, width - side))
    y0 = float(np.clip(cy - side / 2, 0, height - side))
    size = resolution - resolution % 2
    scale = size / side
    margin = max(8, int(0.1 * size))
    # An affine resample of the crop plus a margin of real context around it (for head motion).
    if scale < 1:
        # warpAffine has no area filter: shrink with INTER_AREA first, then place.
        shrunk = (max(1, round(width * scale)), max(1, round(height * scale)))
        source = cv2.resize(rgb, shrunk, interpolation=cv2.INTER_AREA)
        sx, sy, flags = source.shape[1] / width, source.shape[0] / height, cv2.INTER_LINEAR
    else:
        source, sx, sy, flags = rgb, 1.0, 1.0, cv2.INTER_CUBIC
    matrix = np.array([[scale / sx, 0, margin - x0 * scale], [0, scale / sy, margin - y0 * scale]])
    canvas = cv2.warpAffine(source, matrix, (size + 2 * margin, size + 2 * margin), flags=flags,
                            borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    points = (landmarks - np.array([x0, y0])) * scale
    return Framing(canvas, margin, size, size, points)


@dataclass(frozen=True)
class Rig:
    """Displacement fields over the ROI, plus what the mouth and eyelids need per frame."""

    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
    grid_shape: tuple[int, int]  # (rows, cols) of the field grid (the ROI, subsampled)
    fields: np.ndarray  # (NUM_FIELDS, rows * cols * 2) float32: (x, y) per grid cell, row by row
    vertex_fields: np.ndarray  # (NUM_FIELDS, 478, 2): each field at the landmarks
    rest: np.ndarray  # (rows * cols * 2,) float32: the field that closes a parted rest mouth
    vertex_rest: np.ndarray  # (478, 2): the rest field at the landmarks
    eye_pixels: list[
        tuple[np.ndarray, np.ndarray, np.ndarray]
    ]  # per eye: ROI pixel index, lid gap, depth 0..1
    face_height: float
    landmarks: np.ndarray


def build_rig(framing: Framing) -> Rig:
    """Every displacement field of a framed portrait."""
    import cv2

    lm = framing.landmarks
    mesh = lm[:MESH_POINTS]
    face_h = float(np.linalg.norm(mesh[CHIN] - mesh[FOREHEAD])) * 1.15
    vertex_fields = np.zeros((NUM_FIELDS, lm.shape[0], 2))
    vertex_fields[0, :MESH_POINTS], vertex_fields[1, :MESH_POINTS] = _mouth_vertex_fields(mesh, face_h)
    vertex_fields[2, :MESH_POINTS] = _blink_vertex_field(mesh)
    vertex_rest = np.zeros((lm.shape[0], 2))
    vertex_rest[:MESH_POINTS] = _closing_vertex_field(mesh, vertex_fields[0, :MESH_POINTS], face_h)

    # Head: a soft ellipse over the head (hair included) turning about the neck.
    lo, hi = mesh.min(axis=0), mesh.max(axis=0)
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2 - 0.08 * face_h])
    axes = np.array([0.62, 0.72]) * face_h
    pivot = np.array([centre[0], mesh[CHIN][1] + 0.25 * face_h])
    ramp = 1.45  # the head weight falls from 1 at the ellipse to 0 at ramp times its size
    feather = FEATHER * face_h

    x0 = int(np.floor(min(lo[0] - feather, centre[0] - ramp * axes[0])))
    y0 = int(np.floor(min(lo[1] - feather, centre[1] - ramp * axes[1])))
    x1 = int(np.ceil(max(hi[0] + feather, centre[0] + ramp * axes[0])))
    y1 = int(np.ceil(max(hi[1] + feather, centre[1] + ramp * axes[1])))
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(framing.width, x1), min(framing.height, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise InputError(
            "the face lies outside the frame; use framing: full or a portrait with the face inside"
        )
    w, h = x1 - x0, y1 - y0
    # The fields are smooth: a grid of about 40,000 cells, upsampled per frame, is plenty.
    stride = max(1, int(round(np.sqrt(w * h / 40_000))))
    cols, rows = max(2, w // stride), max(2, h // stride)
    # Grid cell centres exactly where cv2.resize (INTER_LINEAR) samples them when upsampling.
    gx = x0 + (np.arange(cols) + 0.5) * (w / cols) - 0.5
    gy = y0 + (np.arange(rows) + 0.5) * (h / rows) - 0.5
    px, py = np.meshgrid(gx, gy)
    points = np.stack([px.ravel(), py.ravel()], axis=1)
    cell = w / cols  # frame pixels per grid cell

    # Piecewise-affine interpolation of the vertex values inside the mesh's Delaunay triangles:
    # each grid cell takes the triangle drawn over it and its barycentric coordinates there.
    to_grid = lambda xy: (xy - [x0, y0] + 0.5) / cell - 0.5  # noqa: E731  frame pixels -> grid cells
    simplices = _delaunay(cv2, mesh)
    simplex = np.full((rows, cols), -1, dtype=np.int32)
    for k, corners_k in enumerate(simplices):
        cv2.fillPoly(simplex, [np.round(to_grid(mesh[corners_k]) * 16).astype(np.int32)], k, lineType=cv2.LINE_8,
                     shift=4)  # fmt: skip
    simplex = simplex.ravel()
    holes = np.zeros((rows, cols), dtype=np.uint8)
    polys = [np.array(MOUTH_HOLE)] + [np.array(upper + lower[-2:0:-1]) for upper, lower, _ in EYES]
    for poly in polys:
        cv2.fillPoly(holes, [np.round(to_grid(mesh[poly]) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    inside = (simplex >= 0) & (holes.ravel() == 0)
    corners = simplices[np.maximum(simplex, 0)]
    a, b, c = (mesh[corners[:, i]] for i in range(3))
    # Barycentric coordinates from the triangle's edge vectors (Cramer's rule).
    e1, e2, rel = b - a, c - a, points - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) > 1e-12, det, 1.0)
    wb = (rel[:, 0] * e2[:, 1] - rel[:, 1] * e2[:, 0]) / det
    wc = (e1[:, 0] * rel[:, 1] - e1[:, 1] * rel[:, 0]) / det
    bary = np.stack([1 - wb - wc, wb, wc], axis=1)
    # A cell the rasteriser gave to a sliver triangle (the lips of a shut mouth) may lie just
    # outside it, where extrapolating would multiply the vertex values: clamp into the triangle.
    bary = np.clip(bary, 0, 1)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)
    # Outside the mesh and in its holes, carry the nearest inside value outward and fade it.
    distance, nearest = _nearest_inside(cv2, inside.reshape(rows, cols))
    fade = 0.5 * (1 + np.cos(np.pi * np.clip(distance * cell / feather, 0, 1)))
    fade[holes.ravel() > 0] = 1.0

    fields = np.zeros((NUM_FIELDS, 2, rows * cols))
    for k in range(3):
        dense = np.einsum("nc,ncd->nd", bary, vertex_fields[k, :MESH_POINTS][corners])
        fields[k] = (dense[nearest] * fade[:, None]).T
    dense = np.einsum("nc,ncd->nd", bary, vertex_rest[:MESH_POINTS][corners])
    rest = dense[nearest] * fade[:, None]
    # In the mouth, the lips part (and shut) along their midline: cells above it take the upper
    # inner lip's motion, cells below the lower one's, interpolated along the lip (the nearest
    # cell's value would put a zigzag boundary across the seam).
    mouth = np.zeros((rows, cols), dtype=np.uint8)
    cv2.fillPoly(mouth, [np.round(to_grid(mesh[MOUTH_HOLE]) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8,
                 shift=4)  # fmt: skip
    cells = np.flatnonzero(cv2.dilate(mouth, np.ones((3, 3), np.uint8)).ravel())
    for values, target in [(vertex_fields[k], fields[k].T) for k in range(2)] + [(vertex_rest, rest)]:
        target[cells] = _split_at_midline(mesh, values[:MESH_POINTS], points[cells])

    # Eyelids: inside the eye opening the closing lid covers the eye from the top down. The
    # grid cells there carry the whole lid travel, so the lid skin above follows smoothly; per
    # frame, the eye's pixels (full resolution, for a crisp lid edge) get exactly the travel of
    # the lid where it covers them, and none below its edge.
    eye_polys = [np.array(upper + lower[-2:0:-1]) for upper, lower, _ in EYES]
    for (upper, lower, _), poly in zip(EYES, eye_polys, strict=True):
        mask = np.zeros((rows, cols), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(((mesh[poly] - [x0, y0] + 0.5) / cell - 0.5) * 16).astype(np.int32)], 1,
                     shift=4)  # fmt: skip
        index = np.flatnonzero(mask.ravel())
        gap = _polyline_y(mesh[lower], points[index, 0]) - _polyline_y(mesh[upper], points[index, 0])
        fields[2, 1, index] = np.maximum(gap, 0.5)
        fields[2, 0, index] = 0
    lid_field = fields[2, 1].reshape(rows, cols).astype(np.float32)
    if (cols, rows) != (w, h):
        lid_field = cv2.resize(lid_field, (w, h), interpolation=cv2.INTER_LINEAR)
    eye_pixels = []
    for (upper, lower, _), poly in zip(EYES, eye_polys, strict=True):
        full = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(full, [np.round((mesh[poly] - [x0, y0]) * 16).astype(np.int32)], 1, shift=4)
        index = np.flatnonzero(full.ravel())
        px, py = x0 + index % w, y0 + index // w
        top = _polyline_y(mesh[upper], px)
        gap = np.maximum(_polyline_y(mesh[lower], px) - top, 0.5)
        depth = np.clip((py - top) / gap, 0, 1)
        eye_pixels.append(tuple(a.astype(np.float32) if a.dtype.kind == "f" else a
                                for a in (index, gap, depth, lid_field.ravel()[index])))  # fmt: skip

    rho = np.hypot((points[:, 0] - centre[0]) / axes[0], (points[:, 1] - centre[1]) / axes[1])
    t = np.clip((rho - 1) / (ramp - 1), 0, 1)
    weight = (1 - t * t * (3 - 2 * t)) * _below_jaw_fade(mesh, points, face_h)
    fields[3] = weight * np.stack([-(points[:, 1] - pivot[1]), points[:, 0] - pivot[0]])
    fields[4] = weight * np.stack([np.full(len(points), face_h), np.zeros(len(points))])
    fields[5] = weight * np.stack([np.zeros(len(points)), np.full(len(points), face_h)])
    for k, node in ((3, lm), (4, lm), (5, lm)):
        rho_v = np.hypot((node[:, 0] - centre[0]) / axes[0], (node[:, 1] - centre[1]) / axes[1])
        tv = np.clip((rho_v - 1) / (ramp - 1), 0, 1)
        wv = (1 - tv * tv * (3 - 2 * tv)) * _below_jaw_fade(mesh, node, face_h)
        if k == 3:
            vertex_fields[k] = wv[:, None] * np.stack(
                [-(node[:, 1] - pivot[1]), node[:, 0] - pivot[0]], axis=1
            )
        else:
            vertex_fields[k, :, k - 4] = wv * face_h
    return Rig(
        roi=(x0, y0, x1, y1),
        grid_shape=(rows, cols),
        fields=np.ascontiguousarray(fields.transpose(0, 2, 1)).reshape(NUM_FIELDS, -1).astype(np.float32),
        vertex_fields=vertex_fields,
        rest=rest.reshape(-1).astype(np.float32),
        vertex_rest=vertex_rest,
        eye_pixels=eye_pixels,
        face_height=face_h,
        landmarks=lm,
    )


def _delaunay(cv2, points: np.ndarray) -> np.ndarray:
    """The Delaunay triangles of `points` (n, 2) as (m, 3) vertex indices (OpenCV's Subdiv2D)."""
    # Subdiv2D starts from a triangle around its rectangle: a rectangle far larger than the
    # points keeps those outer vertices out of the circumcircles of thin triangles on the hull,
    # which would otherwise be lost to them.
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    half = (points.max(axis=0) - points.min(axis=0)) / 2 * 1000 + 1
    subdiv = cv2.Subdiv2D((int(centre[0] - half[0]), int(centre[1] - half[1]),
                           int(2 * half[0]) + 1, int(2 * half[1]) + 1))  # fmt: skip
    # Subdiv2D numbers the inserted points from 4 (0-3 are its outer frame), in insertion order.
    subdiv.insert([(float(x), float(y)) for x, y in points])
    triangles = set()
    for x0, y0, x1, y1, x2, y2 in subdiv.getTriangleList():
        corners = []
        for x, y in ((x0, y0), (x1, y1), (x2, y2)):
            vertex, _ = subdiv.findNearest((x, y))
            corners.append(vertex - 4)
        if min(corners) >= 0:
            triangles.add(tuple(sorted(corners)))
    return np.array(sorted(triangles), dtype=np.int64)


def _nearest_inside(cv2, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each grid cell, the distance (in cells) to the nearest inside cell and that cell's
    flat index; 0 and the cell itself for inside cells. OpenCV's distance transform (5x5 mask,
    within about 2% of the Euclidean distance) with the nearest zero pixel's label."""
    outside = np.where(inside, 0, 1).astype(np.uint8)
    distance, labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, cv2.DIST_MASK_5,
                                                       labelType=cv2.DIST_LABEL_PIXEL)  # fmt: skip
    labels = labels.ravel()
    inside_cells = np.flatnonzero(inside.ravel())
    cell_of_label = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    cell_of_label[labels[inside_cells]] = inside_cells
    return distance.ravel().astype(np.float64), cell_of_label[labels]


def _mouth_vertex_fields(mesh: np.ndarray, face_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Jaw-drop and lip-width displacements (pixels at full motion) of every mesh vertex.

    Everything below the lip line between the mouth corners drops with the jaw (lower lip, chin,
    jaw line); the upper lip lifts a little; cheeks beside the corners follow part way.
    """
    left, right = mesh[MOUTH_LEFT], mesh[MOUTH_RIGHT]
    ex = (right - left) / max(np.linalg.norm(right - left), 1e-6)
    ey = np.array([-ex[1], ex[0]])
    if np.dot(ey, mesh[CHIN] - mesh[FOREHEAD]) < 0:
        ey = -ey
    centre = (mesh[13] + mesh[14]) / 2
    half_width = max(np.linalg.norm(right - left) / 2, 1.0)
    chin_depth = max(float(np.dot(mesh[CHIN] - centre, ey)), 1.0)
    rel = mesh - centre
    u = rel @ ex / half_width
    v = rel @ ey / chin_depth
    # The lip line (midway between the inner lips) as a function of u.
    line = (mesh[UPPER_INNER_LIP] + mesh[LOWER_INNER_LIP]) / 2 - centre
    line_u, line_v = line @ ex / half_width, line @ ey / chin_depth
    order = np.argsort(line_u)
    v_local = v - np.interp(u, line_u[order], line_v[order])

    lateral = np.clip((np.abs(u) - 0.85) / 0.3, 0, 1)  # 0 between the corners, 1 beyond them
    # Beside the corners the cheek follows the jaw over a band reaching well down towards the
    # jaw line and only a little up (a narrow band folded the warp there at high expression).
    above, below_band = 0.02 + 0.3 * lateral, 0.02 + 1.2 * lateral
    s = np.clip((v_local + above) / (above + below_band), 0, 1)
    below = s * s * (3 - 2 * s)
    below[LOWER_INNER_LIP[1:-1]] = 1.0
    below[UPPER_INNER_LIP[1:-1]] = 0.0
    lift = -0.18 * (1 - lateral) * np.exp(-((np.minimum(v_local, 0) / 0.25) ** 2))
    weight = below + (1 - below) * lift
    # Near the lip line the opening tapers to the corners; further down the jaw is rigid and
    # drops as one.
    au = np.abs(u)
    # An oval opening: the drop falls off towards the corners, which open only a quarter as far
    # (half as far made a box-shaped mouth, and folded the warp at the corners, at high expression).
    taper = np.where(au <= 1, 1 - 0.75 * np.clip((au - 0.35) / 0.65, 0, 1) ** 1.6,
                     0.25 + 0.75 * np.clip((au - 1) / 0.6, 0, 1))  # fmt: skip
    weight *= 1 - (1 - taper) * np.exp(-((v_local / 0.3) ** 2))
    weight *= 1 - 0.5 * np.clip((np.abs(u) - 2.0) / 2.0, 0, 1)  # jaw angles move less than the chin
    jaw = weight[:, None] * ey[None, :] * (JAW_OPEN * face_h)
    # Corners pull in a little as the jaw drops.
    jaw += (
        (-np.sign(u) * np.exp(-((np.abs(u) - 1) ** 2) / 0.1) * np.exp(-(v_local**2) / 0.05))[:, None]
        * ex
        * (0.12 * half_width)
    )
    spread = u * np.exp(-((v / 0.6) ** 2)) * np.exp(-(np.maximum(np.abs(u) - 1, 0) ** 2) / 0.8)
    width = spread[:, None] * ex[None, :] * (LIP_SPREAD * half_width)
    # Spread lips thin towards the lip line, rounded ones purse away from it: the lips' height
    # changes against their width, strongest in the middle of the mouth.
    # Measured from the inner lip edges, so the opening between them stays the jaw's alone.
    inner = lambda index: np.interp(u, *_ordered(rel[index] @ ex / half_width, rel[index] @ ey / chin_depth))  # noqa: E731
    upper_edge, lower_edge = inner(UPPER_INNER_LIP), inner(LOWER_INNER_LIP)
    v_lip = np.minimum(v - upper_edge, 0) + np.maximum(v - lower_edge, 0)
    lips = np.exp(-((v_lip / 0.45) ** 2)) * np.clip(1.15 - np.abs(u), 0, 1) ** 0.5
    width -= (LIP_THINNING * v_lip * chin_depth * lips)[:, None] * ey[None, :]
    return jaw, width


def _closing_vertex_field(mesh: np.ndarray, jaw: np.ndarray, face_h: float) -> np.ndarray:
    """The displacement that shuts the portrait's own mouth (zero where its lips already meet).

    The inner lips meet on their midline; the upper lip stretches down over the teeth and the
    lower lip up, fading through each lip's thickness, and the jaw rises by JAW_CLOSING of the
    gap, as a mouth that closes does. Everything is zero beyond the mouth corners.
    """
    upper, lower = mesh[UPPER_INNER_LIP], mesh[LOWER_INNER_LIP]
    midline = (upper + lower) / 2
    ey = _lip_normal(mesh)
    ex = np.array([ey[1], -ey[0]])
    if np.dot(ex, mesh[MOUTH_RIGHT] - mesh[MOUTH_LEFT]) < 0:
        ex = -ex
    centre = midline[5]
    u, v = (mesh - centre) @ ex, (mesh - centre) @ ey
    # Each lip line as a function of u (across the mouth), evaluated at every vertex.
    line = lambda points: np.interp(u, *_ordered((points - centre) @ ex, (points - centre) @ ey))  # noqa: E731
    gaps = np.maximum((lower - upper) @ ey, 0)
    centre_gap = float(np.median(gaps[3:8]))
    gap = np.interp(u, *_ordered((midline - centre) @ ex, gaps), left=0, right=0)
    upper_edge, lower_edge, middle = line(upper), line(lower), line(midline)
    floor = 0.02 * face_h
    upper_lip = np.maximum(upper_edge - line(mesh[UPPER_OUTER_LIP]), floor)
    lower_lip = np.maximum(line(mesh[LOWER_OUTER_LIP]) - lower_edge, floor)

    # The jaw rises by its share of the central gap; the lips close the rest of the gap locally.
    rise = JAW_CLOSING * centre_gap / (JAW_OPEN * face_h)
    field = -rise * jaw
    above = np.maximum(upper_edge - v, 0) / upper_lip
    below = np.maximum(v - lower_edge, 0) / lower_lip
    upper_share = np.exp(-1.05 * above) * np.clip(1 - above / 3, 0, 1)
    lower_share = np.exp(-0.9 * below) * np.clip(1 - below / 4, 0, 1)
    is_upper = v <= middle
    # Each lip presses a little past the midline, so the shut mouth's seam shows lip against
    # lip (no sliver of the teeth behind, and the mesh's inner lip line sits on the teeth's
    # edge in many photos); the mouth opens once the jaw has dropped further than that.
    press = np.minimum(gap / 2, SEAM_OVERLAP * face_h)
    remaining = np.where(gap > 0, gap / 2 + press - np.where(is_upper, field @ ey, -(field @ ey)), 0)
    field += (np.where(is_upper, upper_share, -lower_share) * np.maximum(remaining, 0))[:, None] * ey[None, :]
    # The inner lips meet on their midline, each pressed a little past it.
    inner_press = np.minimum(gaps / 2, SEAM_OVERLAP * face_h)[:, None] * ey[None, :]
    field[UPPER_INNER_LIP] = midline - upper + inner_press
    field[LOWER_INNER_LIP] = midline - lower - inner_press
    return field


def _below_jaw_fade(mesh: np.ndarray, points: np.ndarray, face_h: float) -> np.ndarray:
    """1 down to the jaw line, falling smoothly to 0 within NECK_FADE face heights below it.

    The head turns and sways; the collar and shoulders below it do not. Fading the head's
    motion out along the neck, under the jaw line rather than around an ellipse, keeps the
    collar and the clothes still (they used to stretch as the head moved).
    """
    line = mesh[JAW_LINE]
    order = np.argsort(line[:, 0])
    jaw_y = np.interp(points[:, 0], line[order, 0], line[order, 1])
    t = np.clip((points[:, 1] - jaw_y) / (NECK_FADE * face_h), 0, 1)
    return 1 - t * t * (3 - 2 * t)


def _split_at_midline(mesh: np.ndarray, values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per-vertex `values` (478, 2) carried to `points` inside the mouth: from the upper inner
    lip above the lips' midline, from the lower one below it, interpolated across the mouth."""
    down = _lip_normal(mesh)
    right = np.array([-down[1], down[0]])
    upper, lower = np.array(UPPER_INNER_LIP), np.array(LOWER_INNER_LIP)
    along = lambda xy: (xy - mesh[13]) @ right  # noqa: E731
    u = along(points)
    middle = np.interp(u, *_ordered(along(mesh[upper]), (mesh[upper] + mesh[lower]) @ down / 2))
    is_upper = points @ down <= middle
    out = np.empty((len(points), 2))
    for lip, side in ((upper, is_upper), (lower, ~is_upper)):
        for axis in range(2):
            out[side, axis] = np.interp(u[side], *_ordered(along(mesh[lip]), values[lip, axis]))
    return out


def _lip_normal(mesh: np.ndarray) -> np.ndarray:
    """The unit vector across the lip line, pointing down the face (towards the chin)."""
    left, right = mesh[MOUTH_LEFT], mesh[MOUTH_RIGHT]
    ex = (right - left) / max(np.linalg.norm(right - left), 1e-6)
    ey = np.array([-ex[1], ex[0]])
    return -ey if np.dot(ey, mesh[CHIN] - mesh[FOREHEAD]) < 0 else ey


def _ordered(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    return x[order], y[order]


def _blink_vertex_field(mesh: np.ndarray) -> np.ndarray:
    """Eyelid closure: each upper-lid vertex travels down to the lower lid, the crease part way."""
    field = np.zeros_like(mesh)
    for upper, lower, crease in EYES:
        for index, share in [(i, 1.0) for i in upper[1:-1]] + [(i, 0.3) for i in crease]:
            x = mesh[index, 0]
            gap = _polyline_y(mesh[lower], np.array([x]))[0] - _polyline_y(mesh[upper], np.array([x]))[0]
            field[index, 1] = share * max(gap, 0.0)
    return field


def _polyline_y(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    order = np.argsort(points[:, 0])
    return np.interp(x, points[order, 0], points[order, 1])
