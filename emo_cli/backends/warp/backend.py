"""The `warp` backend: a lip-synced talking portrait on the CPU, with no downloaded weights.

Per job: find the largest face (mediapipe's bundled detector and face mesh), frame it, build
the rig's displacement fields (their rest state a shut mouth, even where the photo's lips are
parted) and compute every motion curve of the track. Per frame: combine the fields with that
frame's motion values, warp the face region with `cv2.remap` (band by band of rows, across the
columns the fields can move), and paint the mouth interior (teeth, tongue, cavity) where the
lips part, or the seam where they meet. Chunks are pure functions of their frame range, so any split into chunks, and any
resume, gives the same frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from emo_cli.backends.base import Backend, JobInput

if TYPE_CHECKING:
    from emo_cli.backends.warp.renderer import WarpRenderer


class WarpBackend(Backend):
    name: ClassVar[str] = "warp"
    version: ClassVar[str] = "1.2"
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
                "description": "How wide the mouth opens (1 = natural, 0 = closed; above a natural wide open, "
                "further on a soft knee).",
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

    def __init__(self, device: str | None = None) -> None:
        super().__init__(device)
        import cv2

        # One warp is a few hundred thousand pixels: OpenCV's worker threads cost more than they
        # save, and they compete with the encoder. The renderer overlaps with the encoder on its
        # own (render ahead), so OpenCV runs single-threaded in a warp worker process.
        cv2.setNumThreads(1)

    def start_job(self, job: JobInput) -> WarpRenderer:
        from concurrent.futures import ThreadPoolExecutor

        from emo_cli.backends.warp.motion import motion_curves
        from emo_cli.backends.warp.renderer import WarpRenderer
        from emo_cli.backends.warp.rig import analyse_portrait, build_rig, frame_portrait
        from emo_cli.media.image import load_portrait

        options = type(self).resolve_options(job.options)
        # The audio's motion curves (NumPy, mostly without the GIL) are computed in a thread
        # while the face is analysed (mostly imports and Python): the once-per-job analysis is
        # the part of a render that keeps one core idle.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warp-curves") as pool:
            curves = pool.submit(
                motion_curves, job.audio, job.sample_rate, job.fps, job.num_frames, job.seed,
                expression=float(options["expression"]), blink_rate=float(options["blink_rate"]),
                head_motion=float(options["head_motion"]),
            )  # fmt: skip
            portrait = load_portrait(job.portrait_path)
            landmarks = analyse_portrait(portrait, job.portrait_path)
            framing = frame_portrait(portrait, landmarks, options["framing"], job.resolution)
            rig = build_rig(framing)
            motion = curves.result().as_array()
        return WarpRenderer(framing, rig, motion, job.num_frames)
