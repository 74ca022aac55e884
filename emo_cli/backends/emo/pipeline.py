"""Clip-by-clip EMO inference: ReferenceNet once per clip, one batched CFG pass per step.

`EmoPipeline.generate_clip` denoises one clip of f latent frames given the reference latent,
the motion latents of the previous clip, the clip's audio features, the face-locator features
and the head speed. Everything random comes from the generator it is handed, so a clip is a
pure function of its inputs; the renderer seeds one generator per (seed, clip index).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emo_cli.backends.emo.modules import Conditions, ReferenceRecorder, motion_sources
from emo_cli.backends.emo.weights import check_weights
from emo_cli.errors import WeightsError

SCHEDULERS = ("ddim", "dpmsolver++")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """ "auto": bf16 on CUDA (SDPA runs its fused kernels), float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def clip_seed(seed: int, clip: int) -> int:
    """The seed of clip `clip`'s generator: no RNG state ever needs saving between chunks."""
    digest = hashlib.sha256(f"emo-clip:{seed}:{clip}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class EmoModel:
    """The loaded parts of one weights directory."""

    reference_unet: Any
    backbone: Any
    face_locator: Any
    audio_proj: Any
    speed_encoder: Any
    vae: Any
    audio_encoder: Any
    scheduler_config: dict
    audio_normalize: bool = True

    def parts(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in
                ("reference_unet", "backbone", "face_locator", "audio_proj", "speed_encoder", "vae", "audio_encoder")}  # fmt: skip


def load_model(
    weights_dir: Path | str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> EmoModel:
    """Load every part of a weights directory (checked first, see `check_weights`)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import Wav2Vec2Model

    from emo_cli.backends.emo.modules import AudioProjection, EmoBackbone, FaceLocator, SpeedEncoder

    root = Path(weights_dir)
    check_weights(root)

    def load(part: str, loader, **kwargs):
        try:
            return loader(root / part, **kwargs)
        except (OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"part {part!r} in {root / part} cannot be loaded ({exc}); re-assemble the "
                               "folder with `emo weights init`") from exc  # fmt: skip

    typed = {"torch_dtype": dtype}
    model = EmoModel(
        reference_unet=load("reference_unet", UNet2DConditionModel.from_pretrained, **typed),
        backbone=load("denoising_unet", EmoBackbone.from_pretrained, **typed),
        face_locator=load("face_locator", FaceLocator.from_pretrained, **typed),
        audio_proj=load("audio_proj", AudioProjection.from_pretrained, **typed),
        speed_encoder=load("speed_encoder", SpeedEncoder.from_pretrained, **typed),
        vae=load("vae", AutoencoderKL.from_pretrained, **typed),
        audio_encoder=load("audio_encoder", Wav2Vec2Model.from_pretrained, dtype=dtype),
        scheduler_config=json.loads((root / "scheduler" / "scheduler_config.json").read_text()),
    )
    pre = root / "audio_encoder" / "preprocessor_config.json"
    if pre.is_file():
        model.audio_normalize = bool(json.loads(pre.read_text()).get("do_normalize", True))
    for part in model.parts().values():
        part.to(device).eval().requires_grad_(False)
    return model


class EmoPipeline:
    """Runs an `EmoModel` on one device in one dtype."""

    def __init__(self, model: EmoModel) -> None:
        self.model = model
        self.backbone = model.backbone
        self.recorder = ReferenceRecorder(model.reference_unet, motion_sources(model.backbone.unet))
        param = next(model.backbone.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vae_scale = 2 ** (len(model.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(model.vae.config.scaling_factor)
        self.motion_frames = int(self.backbone.config.motion_frames)

    # -- per job ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, c, H/8, W/8) latent (the distribution's mode: no randomness)."""
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 127.5 - 1
        latent = self.model.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mode()
        return latent * self.scaling_factor

    @torch.no_grad()
    def face_features(self, mask: np.ndarray) -> torch.Tensor:
        """(H, W) face-region mask in [0, 1] -> the face locator's features."""
        tensor = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
        return self.model.face_locator(tensor.to(self.device, self.dtype))

    @torch.no_grad()
    def audio_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(f, 2m+1, layers, dim) windowed wav2vec features -> (f, tokens, context_dim)."""
        return self.model.audio_proj(features.to(self.device, self.dtype))

    @torch.no_grad()
    def speed_tokens(self, speed: float, frames: int) -> torch.Tensor:
        """A constant head speed over `frames` frames -> (1, frames, tokens, dim)."""
        speeds = torch.full((1, frames), float(speed), device=self.device)
        return self.model.speed_encoder(speeds).to(self.dtype)

    def make_scheduler(self, name: str):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        config = dict(self.model.scheduler_config)
        if name == "ddim":
            return DDIMScheduler.from_config(config)
        if name == "dpmsolver++":
            return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
        raise ValueError(f"unknown scheduler {name!r} (one of {', '.join(SCHEDULERS)})")

    # -- per clip -----------------------------------------------------------------------------------
    def first_motion(self, reference_latent: torch.Tensor, n: int) -> torch.Tensor:
        """What stands in for the previous clip before the first one: zeros or the reference."""
        if self.backbone.config.first_clip_motion == "reference":
            return reference_latent.expand(n, -1, -1, -1)
        return torch.zeros((n, *reference_latent.shape[1:]), device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def reference_pass(
        self, reference_latent: torch.Tensor, motion_latents: torch.Tensor
    ) -> tuple[dict, dict]:
        """ONE ReferenceNet pass over [reference, motion frames]: (reference bank, motion bank)."""
        latents = torch.cat([reference_latent, motion_latents.to(reference_latent.dtype)], dim=0)
        context = self.backbone.empty_context(latents.shape[0], self.dtype, self.device)
        reference, motion = self.recorder(latents, context)
        return reference, (motion if motion_latents.shape[0] else {})

    @torch.no_grad()
    def generate_clip(
        self,
        *,
        reference_latent: torch.Tensor,
        motion_latents: torch.Tensor,
        audio_features: torch.Tensor,
        face_features: torch.Tensor,
        speed: float,
        generator: torch.Generator,
        steps: int = 40,
        scheduler: str = "ddim",
        guidance_scale: float = 3.5,
        naive: bool = False,
    ) -> torch.Tensor:
        """Denoise one clip; returns its latents (f, c, h, w).

        Args:
            motion_latents: (n, c, h, w) latents of the previous clip's last n frames.
            audio_features: (f, 2m+1, layers, dim), one row per frame of the clip.
            generator: a CPU generator; the initial noise is drawn on the CPU so a seed gives
                the same clip on any device.
            naive: the unoptimised reference (benchmark only): ReferenceNet at every step and
                the two CFG branches as two passes. Same result up to rounding.
        """
        frames = audio_features.shape[0]
        n = motion_latents.shape[0]
        cfg = guidance_scale > 1.0
        samples = 2 if cfg else 1
        sched = self.make_scheduler(scheduler)
        sched.set_timesteps(steps, device=self.device)

        audio = self.audio_tokens(audio_features)  # (f, tokens, dim)
        speed_tokens = self.speed_tokens(speed, n + frames)
        keep = torch.tensor([False, True] if cfg else [True], device=self.device)
        face = face_features * keep.to(face_features.dtype).view(-1, 1, 1, 1)

        shape = (1, reference_latent.shape[1], frames, *reference_latent.shape[2:])
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents = (noise * sched.init_noise_sigma).to(self.device, self.dtype)

        def conditions(reference: dict, motion: dict, rows: torch.Tensor) -> Conditions:
            count = rows.shape[0]
            return Conditions(
                reference=reference, motion=motion, audio=audio.repeat(count, 1, 1),
                speed=speed_tokens.expand(count, -1, -1, -1), keep=rows, frames=frames,
            )  # fmt: skip

        if not naive:
            reference, motion = self.reference_pass(reference_latent, motion_latents)
            batched = conditions(reference, motion, keep)
        # Timesteps as Python ints for the scheduler (its tables live on the CPU) and as device
        # scalars for the backbone: no host-device copy or sync inside the loop.
        timesteps = sched.timesteps
        for i, t in enumerate(timesteps.tolist()):
            model_in = sched.scale_model_input(latents, t)
            if naive:
                reference, motion = self.reference_pass(reference_latent, motion_latents)
                outs = []
                for j in range(samples):
                    row = conditions(reference, motion, keep[j : j + 1])
                    outs.append(self.backbone(model_in, timesteps[i], row, face[j : j + 1]))
                pred = torch.cat(outs)
            else:
                pred = self.backbone(model_in.expand(samples, -1, -1, -1, -1), timesteps[i], batched, face)
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            latents = sched.step(pred, t, latents, return_dict=False)[0]
        return latents[0].permute(1, 0, 2, 3)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, slice_frames: int = 4) -> np.ndarray:
        """(f, c, h, w) latents -> (f, H, W, 3) uint8, decoded `slice_frames` frames at a time."""
        out = []
        for lo in range(0, latents.shape[0], slice_frames):
            part = latents[lo : lo + slice_frames] / self.scaling_factor
            pixels = self.model.vae.decode(part.to(self.dtype), return_dict=False)[0]
            out.append(
                ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
            )
        return torch.cat(out).numpy()
