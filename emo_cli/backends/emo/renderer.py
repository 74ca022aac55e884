"""One EMO job: the reference analysed once, then clip after clip, cut into the render's chunks.

The chunk state is exactly what the next clip needs, as arrays: the motion latents (the last n
latent frames of the previous clip), the index of the next clip, and the decoded frames of the
current clip that the previous chunk did not emit (when chunk and clip boundaries differ).
Each clip's noise comes from a generator seeded by (seed, clip index), so no RNG state is
saved, and a resumed render computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emo_cli.backends.base import ChunkOutput, JobInput, JobRenderer, State
from emo_cli.backends.emo.audio import AudioFeatures
from emo_cli.backends.emo.pipeline import EmoPipeline, clip_seed
from emo_cli.errors import InputError, RenderError

AUDIO_WINDOW = 2  # m: each frame sees the audio of +-2 frames (EMO)
FACE_MARGIN = 0.25  # the face box grown by a quarter each side: room for the head to move


def prepare_portrait(path, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The portrait centre-cropped to a square: (at resolution x resolution, its face-region mask).

    Faces are detected on the square crop before it is shrunk, so small renders (tests, previews)
    still find the face.
    """
    from PIL import Image

    from emo_cli.backends.face import detect_faces
    from emo_cli.media.image import load_portrait

    rgb = load_portrait(path)
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    faces = detect_faces(square)
    if not faces:
        raise InputError(f"no face found in portrait {path}; use a photo with one clearly visible face")
    face, scale = faces[0], resolution / side
    dx, dy = face.width * FACE_MARGIN, face.height * FACE_MARGIN
    x0, x1 = int(max(0, (face.x0 - dx) * scale)), int(min(resolution, np.ceil((face.x1 + dx) * scale)))
    y0, y1 = int(max(0, (face.y0 - dy) * scale)), int(min(resolution, np.ceil((face.y1 + dy) * scale)))
    mask = np.zeros((resolution, resolution), dtype=np.float32)
    mask[y0:y1, x0:x1] = 1.0
    image = Image.fromarray(square).resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8), mask


class EmoRenderer(JobRenderer):
    def __init__(self, pipeline: EmoPipeline, job: JobInput, options: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.job = job
        self.seed = job.seed  # what clips draw their noise from; a quality retry changes it
        self.options = options
        self.width = self.height = job.resolution
        self.clip_frames = int(options["clip_frames"])
        n = options.get("motion_frames")
        self.motion_frames = pipeline.motion_frames if n is None else int(n)
        if self.motion_frames > self.clip_frames:
            raise InputError(f"settings.emo.motion_frames ({self.motion_frames}) must not exceed "
                             f"settings.emo.clip_frames ({self.clip_frames})")  # fmt: skip
        longest = int(pipeline.backbone.unet.config.get("motion_max_seq_length") or 32)
        if self.clip_frames + self.motion_frames > longest:
            raise InputError(f"settings.emo.clip_frames + motion_frames is {self.clip_frames + self.motion_frames}, "
                             f"but the temporal modules of these weights see at most {longest} frames")  # fmt: skip
        if job.resolution % pipeline.vae_scale:
            raise InputError(
                f"settings.resolution {job.resolution} is not a multiple of {pipeline.vae_scale}"
            )
        max_speed = float(pipeline.model.speed_encoder.config.max_speed)
        self.speed = float(options["head_motion"]) * max_speed
        image, mask = prepare_portrait(job.portrait_path, job.resolution)
        self.reference = pipeline.encode_reference(image)
        self.face = pipeline.face_features(mask)
        proj = pipeline.model.audio_proj.config
        self.audio = AudioFeatures(
            pipeline.model.audio_encoder, job.audio, sample_rate=job.sample_rate, fps=job.fps,
            num_frames=job.num_frames, layers=int(proj.layers), normalize=pipeline.model.audio_normalize,
        )  # fmt: skip
        if (2 * AUDIO_WINDOW + 1) != int(proj.window):
            raise RenderError(f"the weights' audio projection expects a window of {proj.window} frames, "
                              f"this version builds {2 * AUDIO_WINDOW + 1}")  # fmt: skip

    def reseed(self, seed: int) -> bool:
        self.seed = seed
        return True

    def initial_state(self) -> State:
        empty = np.zeros((0, self.height, self.width, 3), dtype=np.uint8)
        return {"frame": 0, "clip": 0, "motion": None, "pending": empty}

    def render_clip(self, clip: int, motion: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Clip `clip`: its decoded frames (only those inside the audio) and the next motion latents."""
        p = self.pipeline
        start = clip * self.clip_frames
        if motion is None:
            motion_latents = p.first_motion(self.reference, self.motion_frames)
        else:
            motion_latents = torch.from_numpy(np.asarray(motion, dtype=np.float32)).to(p.device, p.dtype)
        generator = torch.Generator("cpu").manual_seed(clip_seed(self.seed, clip))
        latents = p.generate_clip(
            reference_latent=self.reference,
            motion_latents=motion_latents,
            audio_features=self.audio.window(start, self.clip_frames, AUDIO_WINDOW),
            face_features=self.face,
            speed=self.speed,
            generator=generator,
            steps=int(self.options["steps"]),
            scheduler=str(self.options["scheduler"]),
            guidance_scale=float(self.options["guidance_scale"]),
        )
        keep = min(self.clip_frames, self.job.num_frames - start)
        frames = p.decode(latents[:keep])
        next_motion = latents[latents.shape[0] - self.motion_frames :].float().cpu().numpy()
        return frames, next_motion

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        if int(state["frame"]) != start:
            raise RenderError(
                f"emo state is after frame {int(state['frame']) - 1}, but the chunk starts at {start}"
            )
        parts = [np.asarray(state["pending"], dtype=np.uint8)]
        have = parts[0].shape[0]
        clip, motion = int(state["clip"]), state["motion"]
        while have < count:
            frames, motion = self.render_clip(clip, motion)
            clip += 1
            parts.append(frames)
            have += frames.shape[0]
        frames = np.concatenate(parts)
        out, pending = frames[:count], frames[count:]
        return ChunkOutput(
            frames=np.ascontiguousarray(out),
            state={
                "frame": start + count,
                "clip": clip,
                "motion": motion,
                "pending": np.ascontiguousarray(pending),
            },
        )
