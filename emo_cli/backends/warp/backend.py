"""The `warp` backend: a lip-synced talking portrait on the CPU, with no downloaded weights.

Per job: find the largest face (mediapipe's bundled detector and face mesh), frame it, build
the rig's displacement fields and compute every motion curve of the track. Per frame: combine
the fields with that frame's motion values, warp the face region with one `cv2.remap`, and
paint the mouth interior where the lips part. Chunks are pure functions of their frame range,
so any split into chunks, and any resume, gives the same frames.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

from emo_cli.backends.base import Backend, ChunkOutput, JobInput, JobRenderer, State
from emo_cli.errors import RenderError


class WarpBackend(Backend):
    name: ClassVar[str] = "warp"
    version: ClassVar[str] = "1.0"
    sample_rate: ClassVar[int] = 16000
    resources: ClassVar[str] = "cpu"
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "framing": {
                "description": "crop: a square head-and-shoulders crop at `resolution`, centred on the face; "
                "full: the whole image at its own size (rounded down to even width and height).",
                "enum": ["crop", "full"],
                "default": "crop",
            },
            "head_motion": {
                "description": "Scale of head tilt and sway following the voice's energy and pitch; 0 = still head.",
                "type": "number",
                "minimum": 0,
                "maximum": 4,
                "default": 1.0,
            },
            "expression": {
                "description": "How wide the mouth opens (1 = natural, 0 = closed).",
                "type": "number",
                "minimum": 0,
                "maximum": 2.5,
                "default": 1.0,
            },
            "blink_rate": {
                "description": "Average blinks per minute (at random times chosen by the seed); 0 = none.",
                "type": "number",
                "minimum": 0,
                "maximum": 60,
                "default": 15,
            },
        },
    }

    def start_job(self, job: JobInput) -> WarpRenderer:
        from emo_cli.backends.warp.motion import motion_curves
        from emo_cli.backends.warp.rig import analyse_portrait, build_rig, frame_portrait
        from emo_cli.media.image import load_portrait

        options = type(self).resolve_options(job.options)
        portrait = load_portrait(job.portrait_path)
        landmarks = analyse_portrait(portrait, job.portrait_path)
        framing = frame_portrait(portrait, landmarks, options["framing"], job.resolution)
        rig = build_rig(framing)
        curves = motion_curves(
            job.audio, job.sample_rate, job.fps, job.num_frames, job.seed,
            expression=float(options["expression"]), blink_rate=float(options["blink_rate"]),
            head_motion=float(options["head_motion"]),
        )  # fmt: skip
        return WarpRenderer(framing, rig, curves.as_array(), job.num_frames)


class WarpRenderer(JobRenderer):
    """Renders frames of one job from its precomputed rig and motion curves."""

    def __init__(self, framing, rig, motion: np.ndarray, num_frames: int) -> None:
        import cv2

        from emo_cli.backends.warp.mouth import MouthPainter

        self._cv2 = cv2
        self.framing = framing
        self.rig = rig
        self.width, self.height = framing.width, framing.height
        self.num_frames = num_frames
        face_h = rig.face_height
        # Motion values -> field weights: jaw and width are in unit fields, head shift in face heights.
        self.params = motion.astype(np.float32)
        self.motion_id = hashlib.sha256(self.params.tobytes()).hexdigest()[:16]
        m = framing.margin
        x0, y0, x1, y1 = rig.roi
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32) + m, np.arange(y0, y1, dtype=np.float32) + m)
        self._grid = (gx, gy)
        self.frame = framing.canvas[m : m + self.height, m : m + self.width]
        self.mouth = MouthPainter(rig, face_h)
        # Timings of the last render_chunk, for the benchmark: seconds spent warping and painting.
        self.last_timing: dict[str, float] = {}

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
        frames = np.empty((count, self.height, self.width, 3), dtype=np.uint8)
        for offset in range(count):
            self.render_frame(start + offset, out=frames[offset])
        return ChunkOutput(frames=frames, state={"next_frame": start + count, "motion": self.motion_id})

    def displacement(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The content displacement (dx, dy) over the ROI at frame `index`, in frame pixels."""
        cv2 = self._cv2
        rig = self.rig
        params = self.params[index]
        rows, cols = rig.grid_shape
        field = (params @ rig.fields).reshape(2, rows * cols)
        blink = float(params[2])
        if blink > 0:
            # Below the closing lid's edge the eye stays as it is: undo the blink field there.
            for cells, gap, depth in rig.eye_cells:
                covered = np.clip((blink - depth) * gap + 0.5, 0, 1)
                field[1, cells] -= blink * gap * (1 - covered)
        field = field.reshape(2, rows, cols)
        x0, y0, x1, y1 = rig.roi
        size = (x1 - x0, y1 - y0)
        if (cols, rows) != size:
            return (cv2.resize(field[0], size, interpolation=cv2.INTER_LINEAR),
                    cv2.resize(field[1], size, interpolation=cv2.INTER_LINEAR))  # fmt: skip
        return field[0], field[1]

    def render_frame(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame `index` as (height, width, 3) uint8 RGB."""
        cv2 = self._cv2
        if out is None:
            out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        out[...] = self.frame
        dx, dy = self.displacement(index)
        gx, gy = self._grid
        x0, y0, x1, y1 = self.rig.roi
        out[y0:y1, x0:x1] = cv2.remap(self.framing.canvas, gx - dx, gy - dy, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        self.mouth.paint(out, self.params[index])
        return out
