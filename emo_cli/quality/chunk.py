"""Per-chunk measures: what a render loop can afford as it commits each chunk.

`measure_chunk` is a pure function of a chunk's frames, the loudness of its audio span and the
job's `Reference`: it runs the face mesh on a bounded sample of the frames (the loudest, the
quietest, the rest evenly spread), compares each with the reference, and returns a
`ChunkSample`. `emo qc` summarises every frame of a chunk with the same `chunk_figures`, so
the loop's figures and `emo qc`'s are the same measure on fewer frames. Its cost per frame is
printed by benchmarks/qc_cost.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emo_cli.errors import InputError
from emo_cli.quality.measures import (
    Appearance,
    FaceGeometry,
    Reference,
    appearance,
    apply,
    face_geometry,
    make_reference,
    similarity_fit,
)

DEFAULT_SAMPLE = 3  # frames measured per chunk in the render loop (cost: benchmarks/qc_cost.py)
Landmarker = Callable[[np.ndarray], "np.ndarray | None"]


def default_landmarker() -> Landmarker:
    """MediaPipe's bundled face mesh (emo_cli.backends.face), loaded on first use."""
    from emo_cli.backends.face import face_mesh_landmarks

    return face_mesh_landmarks


@dataclass(frozen=True)
class ChunkFigures:
    """The appearance measures of one chunk: medians over the frames measured in it."""

    index: int
    start: int
    count: int
    measured: int  # frames in which the face was found and measured
    ssim: float | None
    delta_e_face: float | None
    delta_e_background: float | None
    sharpness: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def chunk_figures(index: int, start: int, count: int, looks: Sequence[Appearance]) -> ChunkFigures:
    """Summarise a chunk's per-frame appearance (all its frames or a sample) by medians."""
    if not looks:
        return ChunkFigures(index, start, count, 0, None, None, None, None)

    def median(name: str) -> float:
        return round(float(np.median([getattr(a, name) for a in looks])), 4)

    return ChunkFigures(index, start, count, len(looks), median("ssim"), median("delta_e_face"),
                        median("delta_e_background"), median("sharpness"))  # fmt: skip


def reference_for(
    first: np.ndarray, first_geometry: FaceGeometry, portrait: np.ndarray | None = None,
    landmarker: Landmarker | None = None, portrait_name: str = "the portrait",
) -> Reference:  # fmt: skip
    """The job's reference: `portrait` brought into the video's frame by its stable landmarks (a
    video may be a crop of it at another size), or the first frame itself when there is none.

    Raises:
        InputError: the face mesh finds no face in the portrait.
    """
    if portrait is None:
        return make_reference(first, first_geometry)
    import cv2

    landmarks = (landmarker or default_landmarker())(portrait)
    if landmarks is None:
        raise InputError(f"no face found in {portrait_name}")
    own = face_geometry(landmarks)
    transform = similarity_fit(own.stable, first_geometry.stable)
    h, w = first.shape[:2]
    # warpAffine has no area filter: shrink with INTER_AREA first (as the warp backend's rig
    # does), or the aliased reference would look sharper than any faithful render of it.
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    source, placed = portrait, transform
    if scale < 1:
        size = (max(1, round(portrait.shape[1] * scale)), max(1, round(portrait.shape[0] * scale)))
        source = cv2.resize(portrait, size, interpolation=cv2.INTER_AREA)
        placed = np.hstack([transform[:, :2] * (portrait.shape[1] / size[0]), transform[:, 2:]])
    aligned = cv2.warpAffine(source, placed, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return make_reference(aligned, face_geometry(apply(transform, landmarks)), mouth=own.mouth)


@dataclass(frozen=True)
class ChunkSample:
    """What the render loop records for a chunk: its appearance figures and the sampled mouth."""

    figures: ChunkFigures
    frames: tuple[int, ...]  # indices (in the job) of the frames measured
    mouth: tuple[float | None, ...]  # aperture per sampled frame, face heights (None: no face)
    loudness: tuple[float, ...]  # loudness (0..1) per sampled frame

    @property
    def mouth_response(self) -> float | None:
        """Aperture at the loudest sampled frame minus at the quietest (the first of each on a
        tie), face heights: > 0 when the mouth opens for sound. None when either has no face."""
        if not self.loudness:
            return None
        loud, quiet = int(np.argmax(self.loudness)), int(np.argmin(self.loudness))
        if loud == quiet or self.mouth[loud] is None or self.mouth[quiet] is None:
            return None
        return round(self.mouth[loud] - self.mouth[quiet], 4)

    def to_dict(self) -> dict[str, Any]:
        return {**self.figures.to_dict(), "frames": list(self.frames), "mouth": list(self.mouth),
                "loudness": list(self.loudness), "mouth_response": self.mouth_response}  # fmt: skip


def sample_indices(loudness: np.ndarray, sample: int) -> list[int]:
    """Which of a chunk's frames to measure: the loudest, the quietest, the rest evenly spread."""
    count = len(loudness)
    if sample >= count:
        return list(range(count))
    picks = {int(np.argmax(loudness)), int(np.argmin(loudness))}
    for i in np.linspace(0, count - 1, sample).round().astype(int):
        if len(picks) >= sample:
            break
        picks.add(int(i))
    return sorted(picks)


def measure_chunk(
    frames: np.ndarray, *, index: int, start: int, loudness: np.ndarray,
    reference: Reference | Callable[[np.ndarray, FaceGeometry], Reference],
    sample: int = DEFAULT_SAMPLE, landmarker: Landmarker | None = None,
) -> ChunkSample:  # fmt: skip
    """Measure chunk `index` (frames [start, start + len(frames))) on `sample` of its frames.

    `loudness` is the chunk's per-frame loudness (`frame_loudness` of the job's audio, sliced).
    `reference` is the job's `Reference`, or a function giving each measured frame its own
    (`aligned_portrait`: what a loop that may start at any chunk uses).
    """
    mesh = landmarker or default_landmarker()
    picks = sample_indices(np.asarray(loudness), sample)
    looks, mouth = [], []
    for i in picks:
        landmarks = mesh(frames[i])
        if landmarks is None:
            mouth.append(None)
            continue
        geometry = face_geometry(landmarks)
        mouth.append(round(geometry.mouth, 4))
        ref = reference if isinstance(reference, Reference) else reference(frames[i], geometry)
        looks.append(appearance(frames[i], geometry, ref))
    figures = chunk_figures(index, start, len(frames), looks)
    return ChunkSample(figures, tuple(start + i for i in picks), tuple(mouth),
                       tuple(round(float(loudness[i]), 4) for i in picks))  # fmt: skip


def aligned_portrait(
    portrait: np.ndarray, landmarker: Landmarker | None = None, portrait_name: str = "the portrait",
) -> Callable[[np.ndarray, FaceGeometry], Reference]:  # fmt: skip
    """A frame's reference: the portrait brought into that frame by its stable landmarks (the
    portrait's face mesh runs once). A render loop resumed at chunk k has no first frame to
    align to, so each measured frame gets its own; the figures of a chunk then depend on that
    chunk's frames alone, and a resumed render measures exactly what an uninterrupted one does.

    What `reference_for` does for the whole image, done only where it is needed, so the cost
    per measured frame stays small (benchmarks/qc_cost.py): the upper face is warped into its
    box alone, and the face and background colours are taken on the portrait warped straight
    to the small size `colour_means` measures at, for the transform rounded to a 2% step of
    scale and rotation and 2 px of shift (a mean colour does not see the difference) and kept
    per rounded transform: a head that moves little costs one colour measure. The rounded
    transform alone decides the figures, whatever was measured before, so they stay a pure
    function of the frame.

    Raises:
        InputError: the face mesh finds no face in the portrait.
    """
    import cv2

    from emo_cli.quality.measures import (
        COLOUR_SIZE,
        _for_ssim,
        _grey,
        _laplacian_variance,
        colour_means,
        upper_face_box,
    )

    landmarks = (landmarker or default_landmarker())(portrait)
    if landmarks is None:
        raise InputError(f"no face found in {portrait_name}")
    own = face_geometry(landmarks)

    step = np.array([[0.02, 0.02, 2.0], [0.02, 0.02, 2.0]])
    known: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
    shrunk: dict[tuple[int, int], np.ndarray] = {}

    def colours(transform: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        key = (*np.round(transform / step).astype(int).ravel().tolist(), *shape[:2])
        if key not in known:
            if len(known) > 4096:  # bounded, whatever the video
                known.clear()
            known[key] = colours_at(np.asarray(key[:6], float).reshape(2, 3) * step, shape)
        return known[key]

    def colours_at(transform: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        h, w = shape[:2]
        s = min(1.0, COLOUR_SIZE / max(h, w))
        small = transform * s
        image = cv2.warpAffine(portrait, small, (max(1, round(w * s)), max(1, round(h * s))), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        return colour_means(image, face_geometry(apply(small, landmarks)))

    def reference(frame: np.ndarray, geometry: FaceGeometry) -> Reference:
        transform = similarity_fit(own.stable, geometry.stable)
        placed = face_geometry(apply(transform, landmarks))
        x0, y0, x1, y1 = box = upper_face_box(placed, frame.shape)
        # As reference_for: shrink with INTER_AREA first, or the aliased reference would look
        # sharper than any faithful render of it.
        scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
        source, shifted = portrait, transform.copy()
        if scale < 1:
            size = (max(1, round(portrait.shape[1] * scale)), max(1, round(portrait.shape[0] * scale)))
            if size not in shrunk:  # a pure function of the size: keeping it changes no figure
                if len(shrunk) > 32:
                    shrunk.clear()
                shrunk[size] = cv2.resize(portrait, size, interpolation=cv2.INTER_AREA)
            source = shrunk[size]
            shifted = np.hstack([transform[:, :2] * (portrait.shape[1] / size[0]), transform[:, 2:]])
        shifted[:, 2] -= (x0, y0)
        crop = cv2.warpAffine(source, shifted, (max(1, x1 - x0), max(1, y1 - y0)), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        grey = _for_ssim(_grey(crop))
        lab_face, lab_background = colours(transform, frame.shape)
        return Reference(stable=placed.stable, box=box, upper_face=grey, sharpness=_laplacian_variance(grey),
                         lab_face=lab_face, lab_background=lab_background, mouth=own.mouth)  # fmt: skip

    return reference


def load_reference_image(path: Path | str) -> np.ndarray:
    """The portrait as the render loop reads it (EXIF-upright RGB)."""
    from emo_cli.media.image import load_portrait

    return load_portrait(path)
