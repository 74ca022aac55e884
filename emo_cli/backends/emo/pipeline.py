"""Clip-by-clip EMO and Hallo inference: ReferenceNet once per clip, one batched CFG pass per step.

`EmoPipeline.generate_clip` denoises one EMO clip of f latent frames given the reference latent,
the motion latents of the previous clip, the clip's audio features, the face-locator features
and the head speed. `EmoPipeline.hallo_clip` does the same for weights imported from Hallo /
Hallo2 (`emo weights import-hallo`), from a `HalloPortrait` prepared once per job, and returns
decoded frames. Everything random comes from the generator it is handed, so a clip is a pure
function of its inputs; the renderer seeds one generator per (seed, clip index).

Latents and the CFG combination stay float32 whatever dtype the networks run in: half-precision
latents would round the small per-step updates of a 40-step DDIM away.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
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
    """The loaded parts of one weights directory (EMO: a speed encoder; Hallo: an identity projection)."""

    reference_unet: Any
    backbone: Any
    face_locator: Any
    audio_proj: Any
    speed_encoder: Any
    vae: Any
    audio_encoder: Any
    scheduler_config: dict
    audio_normalize: bool = True
    identity_proj: Any = None
    kind: str = "emo"
    root: Path | None = None  # the weights folder (its ONNX models are read from there)

    def parts(self) -> dict[str, Any]:
        names = ("reference_unet", "backbone", "face_locator", "audio_proj", "speed_encoder", "identity_proj",
                 "vae", "audio_encoder")  # fmt: skip
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def load_model(
    weights_dir: Path | str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> EmoModel:
    """Load every part of a weights directory (checked first, see `check_weights`)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import Wav2Vec2Model

    from emo_cli.backends.emo.modules import (
        AudioProjection,
        EmoBackbone,
        FaceLocator,
        IdentityProjection,
        SpeedEncoder,
    )

    root = Path(weights_dir)
    kind = check_weights(root).get("model", "emo")

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
        speed_encoder=load("speed_encoder", SpeedEncoder.from_pretrained, **typed) if kind == "emo" else None,
        identity_proj=load("image_proj", IdentityProjection.from_pretrained, **typed) if kind == "hallo" else None,
        vae=load("vae", AutoencoderKL.from_pretrained, **typed),
        audio_encoder=load("audio_encoder", Wav2Vec2Model.from_pretrained, dtype=dtype),
        scheduler_config=json.loads((root / "scheduler" / "scheduler_config.json").read_text()),
        kind=kind,
        root=root,
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
        config = model.backbone.config
        self.recorder_sources = motion_sources(model.backbone.unet, config.motion_features,
                                               config.plain_block_temporal)  # fmt: skip
        if config.get("hallo_eval_mode"):  # Hallo's eval-mode branch joins motion frames in the mid block only
            self.recorder_sources = {k: v for k, v in self.recorder_sources.items() if k.startswith("mid_block.")}
        self.recorder = ReferenceRecorder(model.reference_unet, self.recorder_sources)
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
        latents = (noise * sched.init_noise_sigma).to(self.device)  # float32, see the module docstring

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
            model_in = sched.scale_model_input(latents, t).to(self.dtype)
            if naive:
                reference, motion = self.reference_pass(reference_latent, motion_latents)
                outs = []
                for j in range(samples):
                    row = conditions(reference, motion, keep[j : j + 1])
                    outs.append(self.backbone(model_in, timesteps[i], row, face[j : j + 1]))
                pred = torch.cat(outs)
            else:
                pred = self.backbone(model_in.expand(samples, -1, -1, -1, -1), timesteps[i], batched, face)
            pred = pred.float()
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

    # -- Hallo ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pixels in [-1, 1] -> (N, c, H/8, W/8) latents (posterior mean x scaling)."""
        latent = self.model.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mean
        return latent * self.scaling_factor

    @torch.no_grad()
    def prepare_hallo(
        self,
        *,
        image,
        face_region,
        identity,
        masks: dict[str, list],
        trace: dict | None = None,
    ) -> HalloPortrait:
        """What every clip of a Hallo job reads, computed once per job.

        Args:
            image: the portrait at the render size: (H, W, 3) uint8, or a float tensor/array
                (3, H, W) already in [-1, 1] (Hallo's normalised reference image).
            face_region: the face-region image the face locator reads, (H, W, 3) uint8 or float
                (3, H, W) in [0, 1] (Hallo: the face-box mask as an RGB image).
            identity: the raw ArcFace embedding, (512,) or (1, 512), numpy or tensor (InsightFace's
                `face["embedding"]`, not normalised; zeros when no face was found, as in Hallo).
            masks: {"full": [...], "face": [...], "lip": [...]}, each a list of one mask per level
                L = 0..3, at the latent size halved L times (H/8, H/16, H/32, H/64), values in
                [0, 1], any shape that flattens row-major to h_L * w_L.
        """
        height, width = _image_hw(image)
        pixels = _to_pixels(image, signed=True)[None]
        latent = self.encode_pixels(pixels)
        embedding = torch.as_tensor(np.asarray(identity, dtype=np.float32)).reshape(1, -1).to(self.device, self.dtype)
        proj = self.model.identity_proj
        cond = proj(embedding)
        if self.backbone.config.unconditional_context == "projected_zeros":
            uncond = proj(torch.zeros_like(embedding))
        else:
            uncond = torch.zeros_like(cond)
        region = _to_pixels(face_region, signed=False)[None].to(self.device, self.dtype)
        face = self.model.face_locator(region)
        if region.shape[1] == 1:
            region = region.expand(-1, 3, -1, -1)
        levels = []
        h, w = latent.shape[-2:]
        for level in range(len(masks["full"])):
            size = ((h + 2**level - 1) // 2**level) * ((w + 2**level - 1) // 2**level)
            triple = []
            for kind in ("full", "face", "lip"):
                mask = torch.as_tensor(np.asarray(masks[kind][level], dtype=np.float32)).reshape(1, -1)
                if mask.shape[1] != size:
                    raise ValueError(f"masks[{kind!r}][{level}] has {mask.shape[1]} values, level {level} of a "
                                     f"{height}x{width} render needs {size}")  # fmt: skip
                triple.append(mask.to(self.device, self.dtype))
            levels.append(tuple(triple))
        if trace is not None:
            trace.update(imageproj_out_cond=cond, imageproj_out_uncond=uncond, face_locator_out=face,
                         ref_image_latents=latent)  # fmt: skip
        return HalloPortrait(pixels=pixels, latent=latent, context=torch.cat([uncond, cond]), face=face,
                             masks=levels, height=height, width=width, face_region=region[0].float().cpu())  # fmt: skip

    @torch.no_grad()
    def hallo_clip(
        self,
        portrait: HalloPortrait,
        audio_features: torch.Tensor,
        motion: np.ndarray | torch.Tensor | None,
        *,
        generator: torch.Generator,
        motion_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
        steps: int = 40,
        guidance_scale: float = 3.5,
        eta: float = 0.0,
        initial_latents: torch.Tensor | None = None,
        trace: dict | None = None,
        naive: bool = False,
    ) -> HalloClip:
        """One clip of Hallo / Hallo2 weights, as Hallo's own FaceAnimatePipeline computes it.

        Args:
            portrait: from `prepare_hallo` (once per job).
            audio_features: (f, 5, 12, 768) windowed wav2vec features of the clip's f frames, as
                the audio module gives them (f = clip length, 16 for Hallo).
            motion: the previous clip's last n decoded frames (n = 2), (n, H, W, 3) float in
                [0, 1] exactly as `HalloClip.motion` returned them, or None for the first clip
                (the portrait stands in for them, as in Hallo).
            generator: a CPU generator for the initial noise (the renderer seeds one per clip).
            motion_scale: the weights of the full-face (pose), face (expression) and lip audio.
            steps, guidance_scale, eta: DDIM steps, the CFG scale (CFG when > 1), DDIM's eta.
            initial_latents: (1, c, f, h, w) to use instead of the noise drawn (parity checks;
                the noise is still drawn, so the generator's state is the same after it).
            trace: a dict that receives the stages' tensors (parity checks).
            naive: do the per-clip work Hallo's code does (benchmarks): the ReferenceNet over every
                row to its end, the portrait VAE-encoded again. Same result up to rounding.

        Returns:
            `HalloClip`: the f decoded frames (f, H, W, 3) float32 in [0, 1] and `motion`, what
            the next clip's `motion` argument must be (store it in the chunk state to resume).
        """
        config = self.backbone.config
        frames = audio_features.shape[0]
        n = self.motion_frames
        cfg = guidance_scale > 1.0
        samples = 2 if cfg else 1
        sched = self.make_scheduler("ddim")
        sched.set_timesteps(steps, device=self.device)

        audio = self.audio_tokens(audio_features)  # (f, tokens, dim)
        if trace is not None:
            trace["audioproj_out"] = audio[None]
        if cfg:
            if config.unconditional_audio == "zero_tokens":
                audio = torch.cat([torch.zeros_like(audio), audio])
            else:
                audio = audio.repeat(2, 1, 1)
        context = portrait.context if cfg else portrait.context[1:]
        face = torch.cat([torch.zeros_like(portrait.face), portrait.face]) if cfg else portrait.face
        keep = torch.tensor([False, True] if cfg else [True], device=self.device)

        reference, motion_bank = self.hallo_banks(portrait, motion, context, frames, trace, naive=naive,
                                                  generator=generator)  # fmt: skip
        conditions = Conditions(
            reference=reference, motion=motion_bank, audio=audio, keep=keep, frames=frames, context=context,
            region_masks=portrait.masks, motion_scale=tuple(float(v) for v in motion_scale),
        )  # fmt: skip

        shape = (1, portrait.latent.shape[1], frames, *portrait.latent.shape[2:])
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents = (noise * sched.init_noise_sigma).to(self.device)
        if trace is not None:
            trace["initial_latents"] = latents
        if initial_latents is not None:
            latents = initial_latents.to(self.device, torch.float32)
        timesteps = sched.timesteps
        for i, t in enumerate(timesteps.tolist()):
            model_in = sched.scale_model_input(latents, t).to(self.dtype)
            pred = self.backbone(model_in.expand(samples, -1, -1, -1, -1), timesteps[i], conditions, face).float()
            if trace is not None:
                trace[f"step{i}.unet_output"] = pred
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            if eta:
                step_noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(self.device)
                latents = sched.step(pred, t, latents, eta=eta, variance_noise=step_noise, return_dict=False)[0]
            else:
                latents = sched.step(pred, t, latents, return_dict=False)[0]
            if trace is not None:
                trace[f"step{i}.latents_after"] = latents
        if trace is not None:
            trace["final_latents"] = latents
        video = self.decode_unit(latents[0].permute(1, 0, 2, 3), trace=trace)
        return HalloClip(frames=video, motion=video[video.shape[0] - n :].copy())

    def hallo_banks(self, portrait: HalloPortrait, motion, context: torch.Tensor, frames: int,
                    trace: dict | None = None, naive: bool = False,
                    generator: torch.Generator | None = None) -> tuple[dict, dict]:  # fmt: skip
        """The ReferenceNet's bank over [reference, motion frames] per CFG sample, as Hallo builds it.

        Returns the reference tokens per backbone row (samples * frames rows) and the motion
        features per sample, as Hallo's reference attention hands them to its denoising UNet.
        Rows holding the portrait itself are the same in every clip: they are computed once per
        job and context, and kept in `portrait` (for the first clip, whose motion frames are the
        portrait, that is every row). `naive` runs every row every clip, as Hallo does (benchmarks).
        """
        config = self.backbone.config
        samples = context.shape[0]
        motion_latents, first = self._motion_latents(portrait, motion, naive, generator)
        tokens, features = self._bank_rows(portrait, motion_latents, samples, first, naive)
        if trace is not None:
            trace.update({f"ref_bank.{name}": t for name, t in tokens.items()})
        if config.reference_bank_dtype is not None:
            bank_dtype = DTYPES[config.reference_bank_dtype]
            tokens = {name: t.to(bank_dtype).to(t.dtype) for name, t in tokens.items()}
        group = 1 + self.motion_frames
        frame_rows = torch.arange(samples * frames, device=self.device)
        if config.reference_rows == "alternating":  # Hallo tiles its bank over the CFG batch
            sample_of_row = frame_rows % samples
        else:
            sample_of_row = frame_rows // frames
        reference = {name: t[sample_of_row * group] for name, t in tokens.items()}
        motion_bank = {}
        for target, source in (self.recorder_sources.items() if self.motion_frames else ()):
            if source in tokens:  # the bank's tokens (samples * group, hw, c) as (samples, n, c, h, w)
                h, w = self.recorder.sizes[source]
                per_sample = tokens[source].view(samples, group, h * w, -1)[:, 1:]
                motion_bank[target] = per_sample.transpose(-1, -2).reshape(samples, group - 1, -1, h, w)
            else:  # a layer's output (samples * group, c, h, w)
                feats = features[target]
                motion_bank[target] = feats.view(samples, group, *feats.shape[1:])[:, 1:]
        return reference, motion_bank

    def _motion_latents(self, portrait: HalloPortrait, motion, naive: bool,
                        generator: torch.Generator | None) -> tuple[torch.Tensor, bool]:  # fmt: skip
        """The motion frames' latents, and whether they are the portrait's own latent (first clip)."""
        config = self.backbone.config
        n = self.motion_frames
        first = motion is None and config.first_clip_motion == "reference"
        drop = config.get("motion_patch_drop")
        if motion is None and not (first and drop):
            return self.first_motion(portrait.latent, n), first
        if motion is None:  # Hallo2 drops patches of the portrait standing in for the motion frames too
            pixels = portrait.pixels.to(self.device).expand(n, -1, -1, -1)
        else:
            pixels = _frames_to_pixels(motion).to(self.device)
        if drop:
            pixels = drop_motion_patches(pixels, portrait.face_region.to(self.device), drop, generator)
        if naive:  # Hallo encodes the portrait again with the motion frames
            return self.encode_pixels(torch.cat([portrait.pixels.to(self.device), pixels]))[1:], False
        return self.encode_pixels(pixels), False

    def _bank_rows(self, portrait: HalloPortrait, motion_latents: torch.Tensor, samples: int, first: bool,
                   naive: bool) -> tuple[dict, dict]:  # fmt: skip
        """ReferenceNet tokens of the batch [portrait, motion frames] x samples, in Hallo's row order,
        the portrait's rows from the job's cache; and the motion rows' layer outputs (if any are read)."""
        config = self.backbone.config
        group = 1 + self.motion_frames
        rows = torch.arange(samples * group)
        ids = torch.tensor([0, 1] if samples == 2 else [1])  # which of portrait.context (0 uncond, 1 cond)
        if config.reference_context == "cfg_tiled":
            row_context = ids[rows % samples]  # Hallo: the batch r, m.., r, m.. meets u, c, u, c, ...
        elif config.reference_context == "per_sample":
            row_context = ids[rows // group]
        else:
            row_context = torch.full_like(rows, -1)  # one zero token
        cached = (rows % group == 0) | first
        if naive or config.motion_features != "reference_tokens":
            cached = torch.zeros_like(cached)
        missing = sorted({int(c) for c in row_context[cached]} - set(portrait.bank))
        if missing:
            latents = portrait.latent.expand(len(missing), -1, -1, -1)
            tokens, _ = self.recorder.record(latents, self._reference_context(portrait, torch.tensor(missing)))
            for i, key in enumerate(missing):
                portrait.bank[key] = {name: t[i : i + 1] for name, t in tokens.items()}
        others = (~cached).nonzero().flatten()
        computed, features = {}, {}
        if len(others):
            latents = torch.cat([portrait.latent, motion_latents.to(portrait.latent.dtype)]).repeat(samples, 1, 1, 1)
            self.recorder.stop_early = not naive
            try:
                computed, features = self.recorder.record(latents[others.to(self.device)],
                                                          self._reference_context(portrait, row_context[others]))  # fmt: skip
            finally:
                self.recorder.stop_early = True
        position = {int(row): i for i, row in enumerate(others)}
        tokens = {}
        for name in self.recorder.block_names:
            tokens[name] = torch.cat([
                portrait.bank[int(row_context[row])][name] if cached[row] else computed[name][position[row]][None]
                for row in range(len(rows))
            ])  # fmt: skip
        return tokens, features

    def _reference_context(self, portrait: HalloPortrait, ids: torch.Tensor) -> torch.Tensor:
        """ReferenceNet contexts for batch rows: portrait.context[id], or one zero token where id < 0."""
        if bool((ids < 0).any()):
            return self.backbone.empty_context(len(ids), self.dtype, self.device)
        return portrait.context[ids.to(portrait.context.device)]

    @torch.no_grad()
    def decode_unit(self, latents: torch.Tensor, slice_frames: int = 1, trace: dict | None = None) -> np.ndarray:
        """(f, c, h, w) latents -> (f, H, W, 3) float32 in [0, 1] (Hallo decodes one frame at a time)."""
        out = []
        for lo in range(0, latents.shape[0], slice_frames):
            part = latents[lo : lo + slice_frames] / self.scaling_factor
            out.append(self.model.vae.decode(part.to(self.dtype), return_dict=False)[0].float())
        raw = torch.cat(out)
        if trace is not None:
            trace["vae_decoded_raw"] = raw
        video = (raw / 2 + 0.5).clamp(0, 1)
        return video.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class HalloPortrait:
    """The per-job inputs of a Hallo render (see `EmoPipeline.prepare_hallo`)."""

    pixels: torch.Tensor  # (1, 3, H, W) the portrait in [-1, 1]
    latent: torch.Tensor  # (1, c, h, w) the portrait's VAE latent
    context: torch.Tensor  # (2, tokens, dim): identity tokens of a zero embedding, of the portrait
    face: torch.Tensor  # (1, C, h, w) face locator features
    masks: list  # per level: (full, face, lip), each (1, h_L * w_L)
    height: int
    width: int
    face_region: torch.Tensor | None = None  # (3, H, W) in [0, 1], what the face locator read
    # context id (0 unconditional, 1 conditional, -1 none) -> the ReferenceNet bank of the portrait row
    bank: dict = field(default_factory=dict)


@dataclass
class HalloClip:
    """One rendered Hallo clip."""

    frames: np.ndarray  # (f, H, W, 3) float32 in [0, 1]
    motion: np.ndarray  # (n, H, W, 3) float32 in [0, 1]: the next clip's `motion` argument


def drop_motion_patches(pixels: torch.Tensor, face_region: torch.Tensor, rate: float,
                        generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
    """Hallo2's patch-drop: pixels (n, 3, H, W) outside the face region set to 0 where a uniform
    draw (one per pixel position, from `generator`) is at most `rate`; the face region is kept."""
    height, width = pixels.shape[-2:]
    keep = torch.rand(height, width, generator=generator) > rate
    keep = keep.to(pixels.device)[None, None] | face_region.bool()[None]
    return pixels * keep


def _image_hw(image) -> tuple[int, int]:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return int(arr.shape[0]), int(arr.shape[1])
    return int(arr.shape[-2]), int(arr.shape[-1])


def _to_pixels(image, *, signed: bool) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1] (signed) or [0, 1]; float input is taken as
    (3, H, W) already in that range."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return x * 2 - 1 if signed else x
    return torch.as_tensor(np.asarray(image, dtype=np.float32) if not torch.is_tensor(image) else image).float()


def _frames_to_pixels(frames) -> torch.Tensor:
    """Decoded frames (n, H, W, 3) in [0, 1] -> (n, 3, H, W) in [-1, 1], clamped as Hallo does."""
    x = torch.as_tensor(np.asarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
    return x.clamp(0, 1) * 2 - 1
