"""One face track per video: which frames become training clips, and the crop of each clip.

A frame is usable when the bundled detector finds exactly one face in it (a second face of at
least `SECOND_FACE_AREA` of the first one's area makes it a multi-face frame: whose speech is
it?). Usable frames are cut into runs at shot cuts, found two ways: the colour histogram of
the whole frame changes abruptly, or the face box jumps further than a head moves in 1/25 s.
Runs shorter than the minimum clip length are dropped; long ones are split into equal clips;
clips whose face is so small that the crop would be enlarged more than `MAX_UPSCALE` times are
dropped.

Each clip gets one square crop for all of its frames, so head motion stays in the pixels (a
crop that followed the face would erase the motion the speed layers must learn): centred on
the face track, `CROP_FACE_SIZES` face boxes wide or wider to hold the whole track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECOND_FACE_AREA = 0.05  # a second face this large (relative to the largest) marks a multi-face frame
CUT_HISTOGRAM_DISTANCE = 0.45  # half the L1 distance of normalised colour histograms (0 same, 1 disjoint)
CUT_BOX_JUMP = 0.5  # face centre moving more than half the face size between frames: a cut
CUT_BOX_SCALE = 1.5  # face size changing by more than this factor between frames: a cut
CROP_FACE_SIZES = 2.5  # crop side in face-box sizes: head, hair and the top of the shoulders
MAX_UPSCALE = 2.0  # a crop may be enlarged at most this much to the training resolution
HEADROOM = 0.1  # the crop centre sits this many face sizes below the face centre (shoulders, not sky)


@dataclass(frozen=True)
class FrameFaces:
    """What pass 1 keeps of a frame: a few numbers, so an hour of footage costs a few megabytes."""

    box: tuple[float, float, float, float] | None  # the largest face (x0, y0, x1, y1) in source pixels
    faces: int  # faces counted (see SECOND_FACE_AREA)
    cut: bool = False  # a shot cut lies between the previous frame and this one
    gap: bool = False  # the frame stands in a hole of the source (see video.read_frames_marked)


@dataclass(frozen=True)
class ClipPlan:
    """A clip to write: source frames [start, stop) at the dataset rate, and its square crop."""

    start: int
    stop: int
    crop: tuple[int, int, int]  # x0, y0, side in source pixels

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass
class TrackStats:
    """Frames dropped from a video, and why (the index reports them)."""

    frames: int = 0
    no_face: int = 0
    multi_face: int = 0
    cuts: int = 0
    short: int = 0  # usable frames in runs shorter than the minimum clip
    small_face: int = 0  # usable frames whose face is too small for the training resolution
    gaps: int = 0  # frames in holes of the source (damaged or missing footage)


class FaceTracker:
    """Pass 1: feed frames in order; `frames` collects what `plan_clips` needs of each."""

    def __init__(self) -> None:
        self.frames: list[FrameFaces] = []
        self._histogram: np.ndarray | None = None

    def add(self, rgb: np.ndarray, gap: bool = False) -> None:
        from emo_cli.backends.face import detect_faces

        if gap:  # a repeated frame in a hole of the source: nothing to learn, and no cut test across it
            self.frames.append(FrameFaces(box=None, faces=0, gap=True))
            self._histogram = None
            return
        faces = detect_faces(rgb)
        count, box = 0, None
        if faces:
            largest = faces[0]
            count = sum(1 for f in faces if f.area >= SECOND_FACE_AREA * largest.area)
            box = (largest.x0, largest.y0, largest.x1, largest.y1)
        histogram = colour_histogram(rgb)
        previous = self.frames[-1] if self.frames else None
        cut = previous is not None and self._histogram is not None and \
            is_cut(self._histogram, histogram, previous.box, box)  # fmt: skip
        self.frames.append(FrameFaces(box=box, faces=count, cut=cut))
        self._histogram = histogram


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalised 8x8x8-bin RGB histogram of a 64x64 thumbnail."""
    import cv2

    small = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)
    hist = cv2.calcHist([small], [0, 1, 2], None, [8, 8, 8], [0, 256, 0, 256, 0, 256]).reshape(-1)
    return hist / max(float(hist.sum()), 1.0)


def is_cut(hist_a: np.ndarray, hist_b: np.ndarray, box_a: tuple | None, box_b: tuple | None) -> bool:
    """Whether a shot cut lies between two consecutive frames (their histograms and face boxes)."""
    if 0.5 * float(np.abs(hist_a - hist_b).sum()) > CUT_HISTOGRAM_DISTANCE:
        return True
    if box_a is None or box_b is None:
        return False
    size_a, size_b = _size(box_a), _size(box_b)
    (ax, ay), (bx, by) = _centre(box_a), _centre(box_b)
    if np.hypot(bx - ax, by - ay) > CUT_BOX_JUMP * max(size_a, size_b):
        return True
    return max(size_a, size_b) > CUT_BOX_SCALE * max(min(size_a, size_b), 1e-6)


def plan_clips(
    observed: list[FrameFaces], width: int, height: int, min_frames: int, max_frames: int, min_side: int = 0
) -> tuple[list[ClipPlan], TrackStats]:
    """The clips of a video from its per-frame observations, and the count of frames dropped.

    A clip whose crop is narrower than `min_side` source pixels (a face too small: the crop would
    be blown up into blur the model learns) is dropped.
    """
    stats = TrackStats(frames=len(observed))
    runs: list[tuple[int, int]] = []
    start = None
    for i, obs in enumerate(observed):
        usable = obs.faces == 1 and not obs.gap
        if not usable:
            if obs.gap:
                stats.gaps += 1
            elif obs.faces == 0:
                stats.no_face += 1
            else:
                stats.multi_face += 1
        cut = i > 0 and obs.cut
        if cut:
            stats.cuts += 1
        if start is not None and (not usable or cut):
            runs.append((start, i))
            start = None
        if usable and start is None:
            start = i
    if start is not None:
        runs.append((start, len(observed)))

    clips = []
    for a, b in runs:
        if b - a < min_frames:
            stats.short += b - a
            continue
        pieces = -(-(b - a) // max_frames)
        bounds = np.linspace(a, b, pieces + 1).round().astype(int)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            boxes = np.array([observed[i].box for i in range(s, e)], dtype=np.float64)
            crop = crop_for(boxes, width, height)
            if crop[2] < min_side:
                stats.small_face += int(e - s)
                continue
            clips.append(ClipPlan(int(s), int(e), crop))
    return clips, stats


def crop_for(boxes: np.ndarray, width: int, height: int) -> tuple[int, int, int]:
    """A square (x0, y0, side) inside the frame holding every face box of a clip with room around."""
    sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    size = float(np.median(sizes))
    lo, hi = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
    side = max(CROP_FACE_SIZES * size, float((hi - lo).max()) + size)
    side = int(min(round(side), width, height))
    cx = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
    cy = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2)) + HEADROOM * size
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return x0, y0, side


def _size(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], box[3] - box[1])


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
