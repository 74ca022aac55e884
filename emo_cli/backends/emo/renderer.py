"""One EMO or Hallo job: the reference analysed once, then clip after clip, cut into the chunks.

The chunk state is exactly what the next clip needs, as arrays: the motion frames (EMO: the
last n latent frames of the previous clip; Hallo: its last n decoded frames, float32 in [0, 1],
which Hallo re-encodes with the VAE), the index of the next clip, and the decoded frames of the
current clip that the previous chunk did not emit (when chunk and clip boundaries differ).
Each clip's noise (and Hallo2's motion-frame pixel drop, which the pipeline draws from the same
generator) comes from a generator seeded by (seed, clip index), so no RNG state is saved, and a
resumed render computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emo_cli.backends.base import ChunkOutput, JobInput, JobRenderer, State
from emo_cli.backends.emo import EMO_CLIP_FRAMES
from emo_cli.backends.emo.audio import AudioFeatures
from emo_cli.backends.emo.pipeline import EmoPipeline, clip_seed
from emo_cli.errors import InputError, RenderError

AUDIO_WINDOW = 2  # m: each frame sees the audio of +-2 frames (EMO)
FACE_MARGIN = 0.25  # the face box grown by a quarter each side: room for the head to move


def weights_clip_frames(pipeline: EmoPipeline) -> int:
    """The clip length the weights were trained with (their index's `clip_frames`), else EMO's 12."""
    from emo_cli.backends.emo.weights import read_index

    root = getattr(pipeline.model, "root", None)
    value = read_index(root).get("clip_frames") if root is not None else None
    return int(value or EMO_CLIP_FRAMES)


def check_frames(pipeline: EmoPipeline, clip_frames: int, motion_frames: int) -> None:
    """Clip and motion lengths the temporal modules can take, checked before any compute."""
    if motion_frames > clip_frames:
        raise InputError(f"settings.emo.motion_frames ({motion_frames}) must not exceed "
                         f"settings.emo.clip_frames ({clip_frames})")  # fmt: skip
    longest = int(pipeline.backbone.unet.config.get("motion_max_seq_length") or 32)
    if clip_frames + motion_frames > longest:
        raise InputError(f"settings.emo.clip_frames + motion_frames is {clip_frames + motion_frames}, "
                         f"but the temporal modules of these weights see at most {longest} frames")  # fmt: skip


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
        from emo_cli.backends.emo import EmoBackend

        for key, neutral in EmoBackend.hallo_options.items():
            if options.get(key, neutral) != neutral:
                raise InputError(f"settings.emo.{key} applies to Hallo weights only; {options['weights'] or 'these weights'} "
                                 "are EMO weights: remove it")  # fmt: skip
        self.clip_frames = int(options.get("clip_frames") or weights_clip_frames(pipeline))
        n = options.get("motion_frames")
        self.motion_frames = pipeline.motion_frames if n is None else int(n)
        check_frames(pipeline, self.clip_frames, self.motion_frames)
        if job.resolution % pipeline.vae_scale:
            raise InputError(
                f"settings.resolution {job.resolution} is not a multiple of {pipeline.vae_scale}"
            )
        # Calibrated weights map head_motion to a quantile of their footage's head speed.
        self.speed = pipeline.model.speed_encoder.speed_for_head_motion(float(options["head_motion"]))
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
        return _render_chunk(self, start, count, state)

def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames in [0, 1] -> uint8 as Hallo writes its video (x 255, clipped, truncated)."""
    return np.clip(np.asarray(frames) * 255, 0, 255).astype(np.uint8)


class HalloRenderer(JobRenderer):
    """A job on Hallo / Hallo2 weights (`emo weights import-hallo`): Hallo's preprocessing once,
    then `EmoPipeline.hallo_clip` clip after clip, each fed the last n decoded frames of the last
    (Hallo2's pixel drop on them is a config value of the weights, applied by the pipeline)."""

    def __init__(self, pipeline: EmoPipeline, job: JobInput, options: dict[str, Any]) -> None:
        from emo_cli.backends.emo import preprocess
        from emo_cli.backends.emo.audio import HalloAudio
        from emo_cli.backends.emo.weights import read_index

        self.pipeline = pipeline
        self.job = job
        self.options = options
        self.width = self.height = job.resolution
        root = pipeline.model.root
        self.variant = str(read_index(root).get("variant", "hallo"))
        self.clip_frames = int(options.get("clip_frames") or weights_clip_frames(pipeline))
        self.motion_frames = pipeline.motion_frames
        n = options.get("motion_frames")
        if n is not None and int(n) != self.motion_frames:
            raise InputError(f"settings.emo.motion_frames is {n}, but these Hallo weights were trained with "
                             f"{self.motion_frames} motion frames: leave it unset")  # fmt: skip
        check_frames(pipeline, self.clip_frames, self.motion_frames)
        if options.get("scheduler", "ddim") != "ddim":
            raise InputError("settings.emo.scheduler: Hallo weights render with their own DDIM (v-prediction, "
                             "zero-SNR, trailing timesteps); remove the setting or set it to ddim")  # fmt: skip
        if job.resolution % 64:
            raise InputError(f"settings.resolution {job.resolution}: Hallo weights need a multiple of 64 "
                             "(their region masks go down to 1/64 of the image); Hallo was trained at 512")  # fmt: skip
        self.motion_scale = tuple(float(options[k]) for k in ("pose_weight", "face_weight", "lip_weight"))
        prepared = preprocess.prepare_portrait(job.portrait_path, job.resolution, root,
                                               float(options.get("face_expand_ratio", 1.2)))  # fmt: skip
        regions = prepared.regions
        self.portrait = pipeline.prepare_hallo(
            image=prepared.image, face_region=regions.face_region, identity=prepared.identity,
            masks={"full": regions.full_masks, "face": regions.face_masks, "lip": regions.lip_masks},
        )  # fmt: skip
        audio = preprocess.prepare_audio(job.audio, job.sample_rate, root)
        self.audio = HalloAudio(
            preprocess.hallo_audio_encoder(pipeline.model), audio, sample_rate=job.sample_rate, fps=job.fps,
            clip_frames=self.clip_frames, mode=str(options.get("audio_features", "auto")),
            normalize=pipeline.model.audio_normalize,
        )  # fmt: skip
        window = int(pipeline.model.audio_proj.config.window)
        if window != 2 * AUDIO_WINDOW + 1:
            raise RenderError(f"the weights' audio projection expects a window of {window} frames, "
                              f"Hallo's is {2 * AUDIO_WINDOW + 1}")  # fmt: skip

    def initial_state(self) -> State:
        empty = np.zeros((0, self.height, self.width, 3), dtype=np.uint8)
        return {"frame": 0, "clip": 0, "motion": None, "pending": empty}

    def render_clip(self, clip: int, motion: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Clip `clip`: its frames inside the audio (uint8) and the next clip's motion frames."""
        start = clip * self.clip_frames
        out = self.pipeline.hallo_clip(
            self.portrait, self.audio.window(start, self.clip_frames, AUDIO_WINDOW), motion,
            generator=torch.Generator("cpu").manual_seed(clip_seed(self.job.seed, clip)),
            motion_scale=self.motion_scale, steps=int(self.options["steps"]),
            guidance_scale=float(self.options["guidance_scale"]),
        )  # fmt: skip
        keep = min(self.clip_frames, self.job.num_frames - start)
        return to_uint8(out.frames[:keep]), np.ascontiguousarray(out.motion, dtype=np.float32)

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        return _render_chunk(self, start, count, state)


def _render_chunk(renderer: EmoRenderer | HalloRenderer, start: int, count: int, state: State) -> ChunkOutput:
    """Frames [start, start + count): the pending frames of the state, then whole clips."""
    if int(state["frame"]) != start:
        raise RenderError(
            f"emo state is after frame {int(state['frame']) - 1}, but the chunk starts at {start}"
        )
    parts = [np.asarray(state["pending"], dtype=np.uint8)]
    have = parts[0].shape[0]
    clip, motion = int(state["clip"]), state["motion"]
    while have < count:
        frames, motion = renderer.render_clip(clip, motion)
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

