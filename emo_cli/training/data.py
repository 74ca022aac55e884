"""Training windows from a prepared dataset: what a trainer reads, step by step, without torch.

A window is `length` contiguous frames of one clip (for EMO's stage 2: n motion frames + f
frames) with what conditions them: the head speed and face boxes of those frames, the face
region (the union of the boxes grown as the renderer grows its face box), and the clip's
whole audio with the window's place in it, because audio features are computed with the
renderer's own windowing (`AudioFeatures(audio, num_frames=clip frames).window(start, ...)`),
which reads context beyond the window.

Sampling is stateless: the window of training step k is drawn from a generator seeded with
(seed, k), every window of every clip equally likely. A resumed run therefore needs only its
step number to read exactly the windows an uninterrupted run reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.errors import InputError
from emo_cli.fsutil import file_matches
from emo_cli.training.index import CLIP_FILES, load_index

# The face region: each box grown by this share of its size on every side, as the renderer's
# FACE_MARGIN does for the portrait (room for the head to move).
FACE_MARGIN = 0.25


@dataclass(frozen=True)
class Window:
    clip: str
    start: int  # first frame, in the clip
    frames: np.ndarray  # (length, H, W, 3) uint8
    speeds: np.ndarray  # (length,) degrees per frame
    boxes: np.ndarray  # (length, 4) face boxes in pixels
    face_mask: np.ndarray  # (H, W) float32, 1 inside the grown union of the boxes
    audio: np.ndarray  # the whole clip's audio, float32 mono
    clip_frames: int  # frames in the whole clip (the audio covers exactly these)


class TrainingData:
    """One split of a prepared dataset.

    Args:
        root: the dataset folder (holding index.json).
        split: "train", "val" or "all".
        verify: re-hash every file of the split against the index first (InputError if one differs).
    """

    def __init__(self, root: Path | str, split: str = "train", verify: bool = False) -> None:
        self.root = Path(root)
        self.index = load_index(self.root)
        if split not in ("train", "val", "all"):
            raise ValueError(f"split {split!r}: use train, val or all")
        self.split = split
        self.clips = [c for c in self.index["clips"] if split == "all" or c["split"] == split]
        settings = self.index["settings"]
        self.fps, self.sample_rate, self.resolution = settings["fps"], settings["sample_rate"], settings["resolution"]
        if verify:
            for clip in self.clips:
                for kind in CLIP_FILES:
                    entry = clip["files"][kind]
                    if not file_matches(self.root / entry["path"], entry["sha256"]):
                        raise InputError(f"{self.root / entry['path']} does not match the sha256 in "
                                         f"{self.root / 'index.json'}; prepare the dataset again")  # fmt: skip
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    @property
    def fingerprint(self) -> str:
        return self.index["fingerprint"]

    @property
    def speed_table(self) -> dict:
        return self.index["speed"]

    def _array(self, clip: dict, kind: str) -> np.ndarray:
        key = (clip["id"], kind)
        if key not in self._arrays:
            self._arrays[key] = np.load(self.root / clip["files"][kind]["path"], mmap_mode="r", allow_pickle=False)
        return self._arrays[key]

    def window(self, clip_index: int, start: int, length: int) -> Window:
        """Frames [start, start + length) of clip `clip_index` and their conditions."""
        clip = self.clips[clip_index]
        if not 0 <= start <= clip["frames"] - length or length < 1:
            raise ValueError(f"window [{start}, {start + length}) is outside clip {clip['id']} "
                             f"of {clip['frames']} frames")  # fmt: skip
        boxes = np.array(self._array(clip, "boxes")[start : start + length])
        return Window(
            clip=clip["id"],
            start=start,
            frames=read_clip_frames(self.root / clip["files"]["frames"]["path"], start, length, self.fps),
            speeds=np.array(self._array(clip, "speed")[start : start + length]),
            boxes=boxes,
            face_mask=face_region(boxes, self.resolution),
            audio=np.array(self._array(clip, "audio")),
            clip_frames=clip["frames"],
        )

    def windows(self, length: int) -> np.ndarray:
        """How many windows of `length` frames each clip holds (0 for clips that are too short)."""
        return np.array([max(0, c["frames"] - length + 1) for c in self.clips], dtype=np.int64)

    def sample(self, step: int, length: int, seed: int) -> tuple[int, int]:
        """(clip index, start) of training step `step`: uniform over all windows, a pure function of its arguments."""
        counts = self.windows(length)
        total = int(counts.sum())
        if total == 0:
            raise InputError(f"no clip of the {self.split} split in {self.root} has {length} frames; "
                             "prepare longer clips (--min-clip-seconds) or train on shorter windows")  # fmt: skip
        pick = int(np.random.default_rng([seed, step]).integers(total))
        clip_index = int(np.searchsorted(np.cumsum(counts), pick, side="right"))
        return clip_index, pick - int(counts[:clip_index].sum())

    def evenly_spaced(self, length: int, count: int) -> list[tuple[int, int]]:
        """`count` fixed windows spread over the split (for validation samples): the same every time."""
        counts = self.windows(length)
        total = int(counts.sum())
        if total == 0:
            return []
        picks = np.linspace(0, total - 1, min(count, total)).round().astype(np.int64)
        ends = np.cumsum(counts)
        out = []
        for pick in picks:
            clip_index = int(np.searchsorted(ends, pick, side="right"))
            out.append((clip_index, int(pick - (ends[clip_index] - counts[clip_index]))))
        return out


def face_region(boxes: np.ndarray, resolution: int, margin: float = FACE_MARGIN) -> np.ndarray:
    """(H, W) float32 mask: 1 inside the union of `boxes`, each grown by `margin` of its size."""
    mask = np.zeros((resolution, resolution), dtype=np.float32)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64):
        dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
        a, b = int(max(0, np.floor(x0 - dx))), int(min(resolution, np.ceil(x1 + dx)))
        c, d = int(max(0, np.floor(y0 - dy))), int(min(resolution, np.ceil(y1 + dy)))
        mask[c:d, a:b] = 1.0
    return mask


def read_clip_frames(path: Path, start: int, length: int, fps: int) -> np.ndarray:
    """Frames [start, start + length) of a prepared clip: seek to the keyframe before, decode on.

    Clips are written with a keyframe every second, so a window costs at most a second of
    decoding before its first frame. Frame numbers come from timestamps, so the result is the
    same as decoding the whole clip and slicing it.
    """
    import av

    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            base = stream.time_base
            first = stream.start_time or 0
            if start > 0:
                container.seek(first + int(round(start / fps / base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                number = int(round(float((frame.pts - first) * base) * fps))
                if number < start:
                    continue
                if number >= start + length:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as exc:
        raise InputError(f"{path} cannot be decoded: {exc}; prepare the dataset again") from None
    if len(out) != length:
        raise InputError(f"{path} holds {len(out)} frames from frame {start}, not {length}; prepare the "
                         "dataset again")  # fmt: skip
    return np.stack(out)
