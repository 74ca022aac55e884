"""`WarpRenderer`: the warp backend's per-frame work (NumPy and OpenCV), loaded only to render.

`backend.py` holds `WarpBackend` itself, light enough for `emo validate` to read its options.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from emo_cli.backends.base import ChunkOutput, JobRenderer, State
from emo_cli.errors import RenderError

PREFETCH_MAX_BYTES = 512 * 2**20  # frames rendered ahead of the render loop, at most
BAND_ROWS = 32  # rows of the face region sampled per cv2.remap call


class WarpRenderer(JobRenderer):
    """Renders frames of one job from its precomputed rig and motion curves."""

    render_ahead: ClassVar[bool] = True  # render the likely next chunks while this one is encoded
    render_ahead_chunks: ClassVar[int] = 2  # how many

    def __init__(self, framing, rig, motion: np.ndarray, num_frames: int) -> None:
        import cv2

        from emo_cli.backends.warp.eyes import EyelidPainter
        from emo_cli.backends.warp.mouth import MouthPainter

        self._cv2 = cv2
        self.framing = framing
        self.rig = rig
        self.width, self.height = framing.width, framing.height
        self.num_frames = num_frames
        # Motion values -> field weights: jaw and width are in unit fields, head shift in face heights.
        self.params = motion.astype(np.float32)
        self.motion_id = hashlib.sha256(self.params.tobytes()).hexdigest()[:16]
        m = framing.margin
        x0, y0, x1, y1 = rig.roi
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32) + m, np.arange(y0, y1, dtype=np.float32) + m)
        self._grid = np.stack([gx, gy], axis=-1)  # canvas coordinates of the ROI's pixels
        self._bands = _moving_bands(cv2, rig)
        self._map = np.empty(BAND_ROWS * (x1 - x0) * 2, dtype=np.float32)  # one band's sampling map
        self.frame = framing.canvas[m : m + self.height, m : m + self.width]
        self.mouth = MouthPainter(rig, self.frame)
        self.eyelids = EyelidPainter(rig, self.frame)
        self._lock = threading.Lock()  # render_frame shares the map buffer
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: deque[tuple[int, int, Future]] = deque()  # chunks queued for the thread, in order

    def initial_state(self) -> State:
        return {"next_frame": 0, "motion": self.motion_id}

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        if state.get("next_frame") != start or state.get("motion") != self.motion_id:
            raise RenderError(
                f"warp chunk state is for frame {state.get('next_frame')} of motion {state.get('motion')}, "
                f"not frame {start} of motion {self.motion_id}; render again without resuming"
            )
        if start < 0 or start + count > self.num_frames:
            raise RenderError(
                f"frames {start}-{start + count - 1} are outside this job's {self.num_frames} frames"
            )
        frames = self._take_ahead(start, count)
        if frames is None:
            frames = self._render(start, count)
        following = start + count
        if self.render_ahead:
            self._queue_ahead(following, count)
        return ChunkOutput(frames=frames, state={"next_frame": following, "motion": self.motion_id})

    def _render(self, start: int, count: int) -> np.ndarray:
        frames = np.empty((count, self.height, self.width, 3), dtype=np.uint8)
        for offset in range(count):
            self.render_frame(start + offset, out=frames[offset])
        return frames

    # Frames are a pure function of their index, so the chunks the render loop will most likely
    # ask for next are rendered in a thread while it encodes this one (OpenCV and NumPy release
    # the GIL): on two cores, render and encode overlap instead of taking turns. Two chunks
    # ahead rather than one, so the thread is not left idle while a chunk's encoder finishes.
    def _queue_ahead(self, following: int, count: int) -> None:
        """Keep the chunks of `count` frames from `following` on queued, up to
        `render_ahead_chunks` of them and PREFETCH_MAX_BYTES of frames."""
        depth = min(self.render_ahead_chunks, PREFETCH_MAX_BYTES // (count * self.width * self.height * 3))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warp-ahead")
        start = self._ahead[-1][0] + self._ahead[-1][1] if self._ahead else following
        while len(self._ahead) < depth and start < self.num_frames:
            size = min(count, self.num_frames - start)
            self._ahead.append((start, size, self._pool.submit(self._render, start, size)))
            start += size

    def _take_ahead(self, start: int, count: int) -> np.ndarray | None:
        if not self._ahead:
            return None
        ahead_start, ahead_count, future = self._ahead.popleft()
        if (ahead_start, ahead_count) == (start, count):
            return future.result()
        self._ahead.appendleft((ahead_start, ahead_count, future))
        self._drop_ahead()  # not the chunks asked for (a resume went elsewhere)
        return None

    def _drop_ahead(self) -> None:
        """Cancel the queued chunks and wait for the one being rendered, if any."""
        while self._ahead:
            _, _, future = self._ahead.popleft()
            if not future.cancel():
                future.exception()  # waits; its frames are not needed

    def close(self) -> None:
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def displacement(self, index: int) -> np.ndarray:
        """The content displacement (h, w, 2) over the ROI at frame `index`, in frame pixels."""
        cv2 = self._cv2
        rig = self.rig
        params = self.params[index]
        rows, cols = rig.grid_shape
        # A plain weighted sum rather than a BLAS product: the same bits on every CPU. The rest
        # field (shutting a parted mouth) always applies.
        field = rig.fields[0] * params[0]
        field += rig.rest
        for k in range(1, len(params)):
            if params[k] != 0:
                field += rig.fields[k] * params[k]
        field = field.reshape(rows, cols, 2)
        x0, y0, x1, y1 = rig.roi
        if (cols, rows) != (x1 - x0, y1 - y0):
            field = cv2.resize(field, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        blink = float(params[2])
        if blink > 0:
            # In the eye: the lid's full travel where it covers, nothing below its edge.
            flat = field.reshape(-1, 2)
            for pixels, gap, depth, lid in rig.eye_pixels:
                # The lid edge runs a little past the lower lid at full closure: no sliver of eye.
                covered = np.clip((1.1 * blink - depth) * gap + 0.5, 0, 1)
                flat[pixels, 1] += blink * (gap * covered - lid)
        return field

    def render_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame `index` as (height, width, 3) uint8 RGB."""
        if out is None:
            out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        with self._lock:
            return self._draw(index, out)

    def _draw(self, index: int, out: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        x0, y0, x1, y1 = self.rig.roi
        out[:] = self.frame
        field = self.displacement(index)
        # Band by band, so the sampling map stays in the CPU's cache between being written and
        # read, and only across the columns the fields can move (elsewhere the displacement is
        # exactly zero and remap would copy the pixel): each output pixel depends only on its
        # own map entry, so neither changes a bit.
        canvas, grid = self.framing.canvas, self._grid
        for top, bottom, left, right in self._bands:
            band = self._map[: (bottom - top) * (right - left) * 2].reshape(bottom - top, right - left, 2)
            np.subtract(grid[top:bottom, left:right], field[top:bottom, left:right], out=band)
            cv2.remap(canvas, band, None, cv2.INTER_LINEAR, dst=out[y0 + top : y0 + bottom, x0 + left : x0 + right],
                      borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        self.mouth.paint(out, self.params[index])
        self.eyelids.paint(out, float(self.params[index, 2]))
        return out


def _moving_bands(cv2, rig) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) in ROI pixels of each band of rows, cut to the columns where
    some field (or an eyelid) is non-zero. Bands where nothing can move are left out."""
    x0, y0, x1, y1 = rig.roi
    rows, cols = rig.grid_shape
    fields = np.concatenate([rig.fields, rig.rest[None]])
    moving = (fields.reshape(len(fields), rows, cols, 2) != 0).any(axis=(0, 3)).astype(np.float32)
    if (cols, rows) != (x1 - x0, y1 - y0):
        # Linear upsampling is non-zero wherever a grid cell it reads from is: as for the fields.
        moving = cv2.resize(moving, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    moving = moving > 0
    for pixels, *_ in rig.eye_pixels:
        moving.reshape(-1)[pixels] = True
    bands = []
    for top in range(0, y1 - y0, BAND_ROWS):
        bottom = min(top + BAND_ROWS, y1 - y0)
        columns = np.flatnonzero(moving[top:bottom].any(axis=0))
        if columns.size:
            bands.append((top, bottom, int(columns[0]), int(columns[-1]) + 1))
    return bands
