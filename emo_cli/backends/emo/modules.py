"""The EMO networks as diffusers models: each saves and loads as config.json + safetensors.

* `EmoBackbone`: the denoising network, a diffusers `UNetMotionModel` (SD1.5 2D UNet plus
  AnimateDiff temporal modules) with the EMO layers attached: reference-attention in every
  spatial self-attention, an audio-attention after each of them, motion-frame features joined
  to every temporal module along the frame axis, and speed cross-attention inside every temporal
  transformer block.
* ReferenceNet: a plain diffusers `UNet2DConditionModel`; `ReferenceRecorder` records its
  self-attention inputs and the features the backbone's temporal modules need, in ONE pass over
  the reference image and the motion frames per clip.
* `FaceLocator`, `AudioProjection`, `SpeedEncoder`: the small conditioning encoders.

Every EMO layer added to a pretrained network ends in a zero-initialised projection, so a model
assembled from SD1.5 + AnimateDiff weights starts out computing exactly what they compute.
The conditions reach the layers through one `Conditions` object the processors and hooks share
(diffusers drops `cross_attention_kwargs` a processor does not name, so no kwargs are used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D, UNetMotionModel
from torch import nn

# Values a config field may take in this version. The alternatives named in the comments are
# what Hallo (the closest open model of the family) uses; they are config, not code paths yet.
CROSS_ATTENTION_CONTEXTS = ("none",)  # Hallo: "identity" (ArcFace tokens in the text slot)
FIRST_CLIP_MOTION = ("zeros", "reference")  # EMO: zeros; Hallo: the reference repeated
FACE_LOCATOR_TARGETS = ("latent", "conv_in")  # EMO: added to the noisy latent; Hallo: after conv_in


def attention(attn: Attention, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """`attn`'s projections around one SDPA call, queries from hidden_states, keys/values from context."""
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    key = attn.to_k(context)
    value = attn.to_v(context)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


@dataclass
class Conditions:
    """What the EMO layers of one backbone call read. Rows are (sample, frame) pairs, sample-major.

    `keep` marks the conditional samples: the unconditional half of a classifier-free-guidance
    batch sees no reference, no audio and no face locator (motion frames and speed stay).
    """

    reference: dict[str, torch.Tensor] = field(default_factory=dict)  # block -> (1, hw, c)
    motion: dict[str, torch.Tensor] = field(default_factory=dict)  # motion module -> (n, c, h, w)
    audio: torch.Tensor | None = None  # (samples * frames, tokens, dim)
    speed: torch.Tensor | None = None  # (samples, n + frames, tokens, dim)
    keep: torch.Tensor | None = None  # (samples,) bool
    frames: int = 1

    def keep_rows(self, rows: int, dtype: torch.dtype) -> torch.Tensor | None:
        if self.keep is None:
            return None
        per_sample = rows // self.keep.shape[0]
        return self.keep.repeat_interleave(per_sample).to(dtype).view(rows, 1, 1)


class ReferenceReadProcessor:
    """Backbone self-attention over concat([x, reference tokens]) along the token axis.

    For unconditional rows the reference tokens are replaced by the row's own tokens: attending
    over [x, x] gives exactly the same result as attending over x alone (each key appears twice
    with the same value, so the softmax weights halve and the sums are unchanged), which drops
    the reference without a mask and keeps the fast SDPA path.
    """

    def __init__(self, block: str, conditions: Conditions) -> None:
        self.block = block
        self.conditions = conditions

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:  # fmt: skip
        ref = self.conditions.reference.get(self.block)
        if ref is None:
            return attention(attn, hidden_states, hidden_states)
        rows = hidden_states.shape[0]
        ref = ref.to(hidden_states.dtype).expand(rows, -1, -1)
        keep = self.conditions.keep_rows(rows, hidden_states.dtype)
        if keep is not None:
            ref = torch.where(keep.bool(), ref, hidden_states)
        return attention(attn, hidden_states, torch.cat([hidden_states, ref], dim=1))


class ReferenceWriteProcessor:
    """ReferenceNet self-attention that records its input tokens for the backbone."""

    def __init__(self, block: str, bank: dict[str, torch.Tensor]) -> None:
        self.block = block
        self.bank = bank

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:  # fmt: skip
        self.bank[self.block] = hidden_states
        return attention(attn, hidden_states, hidden_states)


class CrossAttentionLayer(nn.Module):
    """LayerNorm + cross-attention + residual, output projection zero-initialised."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(query_dim=dim, cross_attention_dim=context_dim, heads=heads,
                              dim_head=dim // heads, out_bias=True)  # fmt: skip
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = attention(self.attn, self.norm(x), context.to(x.dtype))
        return x + (out if keep is None else out * keep)


def _module_key(name: str) -> str:
    return name.replace(".", "__")


def motion_sources(backbone_unet: UNetMotionModel) -> dict[str, str]:
    """Each temporal module's name -> the ReferenceNet module whose output has its input's shape.

    In every block of the backbone a temporal module follows a spatial transformer (or, in the
    blocks without attention, a resnet); the ReferenceNet has the same layer at the same place.
    """
    sources: dict[str, str] = {}
    for prefix, blocks in (
        ("down_blocks", backbone_unet.down_blocks),
        ("up_blocks", backbone_unet.up_blocks),
    ):
        for i, block in enumerate(blocks):
            source = "attentions" if getattr(block, "attentions", None) else "resnets"
            for j in range(len(block.motion_modules)):
                sources[f"{prefix}.{i}.motion_modules.{j}"] = f"{prefix}.{i}.{source}.{j}"
    mid = backbone_unet.mid_block
    if mid is not None and hasattr(mid, "motion_modules"):
        for j in range(len(mid.motion_modules)):
            sources[f"mid_block.motion_modules.{j}"] = f"mid_block.attentions.{j}"
    return sources


class EmoBackbone(ModelMixin, ConfigMixin):
    """The denoising network: `UNetMotionModel` + reference-, audio- and speed-attention, motion frames.

    Args:
        unet_config: the `UNetMotionModel` config (SD1.5 + AnimateDiff sizes for real use).
        audio_context_dim: width of the audio tokens the audio-attention reads.
        speed_context_dim: width of the speed tokens the temporal modules read.
        motion_frames: n, frames of the previous clip joined to the temporal modules (EMO 4, Hallo 2).
        first_clip_motion: what stands in for the motion frames of the first clip.
        face_locator_target: where the face locator's features are added.
        cross_attention_context: what fills SD's text cross-attention slot ("none": one zero
            token, so the slot adds only its output bias, as EMO has no text).
        audio_attention_regions: 1 = one audio-attention over the whole frame (EMO); Hallo splits
            it into pose/face/lip regions (3), which this version does not build.
    """

    @register_to_config
    def __init__(
        self,
        unet_config: dict | None = None,
        audio_context_dim: int = 768,
        speed_context_dim: int = 768,
        motion_frames: int = 4,
        first_clip_motion: str = "zeros",
        face_locator_target: str = "latent",
        cross_attention_context: str = "none",
        audio_attention_regions: int = 1,
    ) -> None:
        super().__init__()
        if first_clip_motion not in FIRST_CLIP_MOTION:
            raise ValueError(
                f"first_clip_motion must be one of {FIRST_CLIP_MOTION}, got {first_clip_motion!r}"
            )
        if face_locator_target not in FACE_LOCATOR_TARGETS:
            raise ValueError(
                f"face_locator_target must be one of {FACE_LOCATOR_TARGETS}, got {face_locator_target!r}"
            )
        if cross_attention_context not in CROSS_ATTENTION_CONTEXTS:
            raise ValueError(f"cross_attention_context {cross_attention_context!r} is not supported by this version "
                             f"(supported: {CROSS_ATTENTION_CONTEXTS})")  # fmt: skip
        if audio_attention_regions != 1:
            raise ValueError("audio_attention_regions other than 1 (region-split audio-attention) is not supported "
                             "by this version")  # fmt: skip
        if motion_frames < 0:
            raise ValueError(f"motion_frames must be >= 0, got {motion_frames}")
        self.unet = UNetMotionModel.from_config(unet_config or {})
        self.audio_attention = nn.ModuleDict()
        self.speed_attention = nn.ModuleDict()
        self.conditions = Conditions()
        self._face_features: torch.Tensor | None = None
        for name, module in self.unet.named_modules():
            if not isinstance(module, BasicTransformerBlock):
                continue
            dim, heads = module.attn1.query_dim, module.attn1.heads
            if ".motion_modules." in name:
                self.speed_attention[_module_key(name)] = CrossAttentionLayer(dim, speed_context_dim, heads)
            else:
                self.audio_attention[_module_key(name)] = CrossAttentionLayer(dim, audio_context_dim, heads)
        self._attach()

    # -- wiring -----------------------------------------------------------------------------------
    def _attach(self) -> None:
        cond = self.conditions
        for name, module in self.unet.named_modules():
            if isinstance(module, BasicTransformerBlock) and ".motion_modules." not in name:
                module.attn1.set_processor(ReferenceReadProcessor(name, cond))
                module.register_forward_hook(self._audio_hook(self.audio_attention[_module_key(name)]))
            elif isinstance(module, BasicTransformerBlock):
                module.register_forward_hook(self._speed_hook(self.speed_attention[_module_key(name)]))
            elif isinstance(module, AnimateDiffTransformer3D):
                module.register_forward_pre_hook(self._motion_in_hook(name), with_kwargs=True)
                module.register_forward_hook(self._motion_out_hook(name))
        self.unet.conv_in.register_forward_hook(self._face_hook)

    def _audio_hook(self, layer: CrossAttentionLayer):
        def hook(module, args, output):
            if self.conditions.audio is None:
                return output
            keep = self.conditions.keep_rows(output.shape[0], output.dtype)
            return layer(output, self.conditions.audio, keep)

        return hook

    def _speed_hook(self, layer: CrossAttentionLayer):
        def hook(module, args, output):
            speed = self.conditions.speed
            if speed is None:
                return output
            # Temporal tokens are (samples * h * w, frames, c); speed is per frame, so attend in
            # (samples * frames, h * w, c) layout, where each row's keys are its own frame's tokens.
            samples, frames = speed.shape[0], speed.shape[1]
            rows, _, channels = output.shape
            hw = rows // samples
            x = (
                output.view(samples, hw, frames, channels)
                .transpose(1, 2)
                .reshape(samples * frames, hw, channels)
            )
            x = layer(x, speed.flatten(0, 1))
            return x.view(samples, frames, hw, channels).transpose(1, 2).reshape(rows, frames, channels)

        return hook

    def _motion_in_hook(self, name: str):
        def hook(module, args, kwargs):
            motion = self.conditions.motion.get(name)
            if motion is None:
                return None
            hidden = args[0] if args else kwargs.pop("hidden_states")
            frames = kwargs.pop("num_frames", None) or (args[4] if len(args) > 4 else 1)
            samples = hidden.shape[0] // frames
            joined = torch.cat(
                [motion.to(hidden.dtype).unsqueeze(0).expand(samples, -1, -1, -1, -1),
                 hidden.view(samples, frames, *hidden.shape[1:])], dim=1,
            )  # fmt: skip
            kwargs["num_frames"] = frames + motion.shape[0]
            return (joined.flatten(0, 1),), kwargs

        return hook

    def _motion_out_hook(self, name: str):
        def hook(module, args, output):
            motion = self.conditions.motion.get(name)
            if motion is None:
                return output
            n = motion.shape[0]
            total = n + self.conditions.frames
            return output.view(-1, total, *output.shape[1:])[:, n:].flatten(0, 1)

        return hook

    def _face_hook(self, module, args, output):
        face = getattr(self, "_face_features", None)
        if face is None or self.config.face_locator_target != "conv_in":
            return output
        return output + face

    # -- forward ----------------------------------------------------------------------------------
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        conditions: Conditions,
        face_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (or v) for `sample` (samples, channels, frames, h, w).

        `face_features` (samples, c, h, w) is the face locator's output, already zeroed for
        unconditional samples; it is added to every frame's latent or after conv_in.
        """
        samples, _, frames = sample.shape[:3]
        face = None
        if face_features is not None:
            face = face_features.to(sample.dtype).unsqueeze(2).expand(-1, -1, frames, -1, -1)
            if self.config.face_locator_target == "latent":
                sample = sample + face
                face = None
            else:
                face = face.permute(0, 2, 1, 3, 4).flatten(0, 1)
        context = self.empty_context(samples * frames, sample.dtype, sample.device)
        self.conditions.reference = conditions.reference
        self.conditions.motion = conditions.motion
        self.conditions.audio = conditions.audio
        self.conditions.speed = conditions.speed
        self.conditions.keep = conditions.keep
        self.conditions.frames = frames
        self._face_features = face
        try:
            return self.unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]
        finally:
            self.conditions.reference, self.conditions.motion = {}, {}
            self.conditions.audio = self.conditions.speed = self.conditions.keep = None
            self._face_features = None

    def empty_context(self, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """What fills SD's text cross-attention slot: one zero token per row (EMO has no text)."""
        return torch.zeros(rows, 1, self.unet.config.cross_attention_dim, dtype=dtype, device=device)


class ReferenceRecorder:
    """Runs a ReferenceNet (`UNet2DConditionModel`) once and returns what the backbone reads.

    Row 0 of the input is the reference latent; rows 1..n are the motion frames. The reference
    row's self-attention inputs go to the reference bank (keyed by transformer block name, the
    same names as in the backbone), the motion rows' features at each temporal module's place go
    to the motion bank.
    """

    def __init__(self, reference_unet, sources: dict[str, str]) -> None:
        self.unet = reference_unet
        self._tokens: dict[str, torch.Tensor] = {}
        self._features: dict[str, torch.Tensor] = {}
        modules = dict(reference_unet.named_modules())
        for name, module in modules.items():
            if isinstance(module, BasicTransformerBlock):
                module.attn1.set_processor(ReferenceWriteProcessor(name, self._tokens))
        for target, source in sources.items():
            if source not in modules:
                raise ValueError(f"the ReferenceNet has no layer {source} for the backbone's {target}")
            modules[source].register_forward_hook(self._feature_hook(target))

    def _feature_hook(self, target: str):
        def hook(module, args, output):
            self._features[target] = output[0] if isinstance(output, tuple) else output

        return hook

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, empty_context: torch.Tensor) -> tuple[dict, dict]:
        self._tokens.clear()
        self._features.clear()
        timestep = torch.zeros((), dtype=torch.long, device=latents.device)
        self.unet(latents, timestep, encoder_hidden_states=empty_context, return_dict=False)
        reference = {name: tokens[:1] for name, tokens in self._tokens.items()}
        motion = {name: feats[1:] for name, feats in self._features.items()}
        self._tokens.clear()
        self._features.clear()
        return reference, motion


class FaceLocator(ModelMixin, ConfigMixin):
    """Light conv encoder of the face-region mask, down to latent size; last conv zero-initialised."""

    @register_to_config
    def __init__(self, in_channels: int = 1, block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
                 out_channels: int = 4) -> None:  # fmt: skip
        super().__init__()
        chans = list(block_out_channels)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, chans[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(chans[:-1], chans[1:], strict=False):
            layers += [
                nn.Conv2d(a, a, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(a, b, 3, padding=1, stride=2),
                nn.SiLU(),
            ]
        self.encoder = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(chans[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.encoder(mask))


class AudioProjection(ModelMixin, ConfigMixin):
    """Windowed multi-layer wav2vec 2.0 features of one frame -> a few context tokens.

    Input (frames, window, layers, feature_dim) with window = 2m + 1 (m = 2 in EMO).
    """

    @register_to_config
    def __init__(self, window: int = 5, layers: int = 12, feature_dim: int = 768, hidden_dim: int = 512,
                 tokens: int = 32, context_dim: int = 768) -> None:  # fmt: skip
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(window * layers * feature_dim, hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, tokens * context_dim),
        )  # fmt: skip
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(features.flatten(1))
        return self.norm(tokens.view(features.shape[0], self.config.tokens, self.config.context_dim))


def default_speed_buckets(count: int = 9, top: float = 0.08) -> tuple[list[float], list[float]]:
    """Evenly spaced bucket centres over [0, top] rad/frame, each as wide as the spacing.

    The paper does not publish d, c_d or r_d; these are a guess kept in the config.
    """
    step = top / max(1, count - 1)
    return [round(i * step, 6) for i in range(count)], [round(step, 6)] * count


class SpeedEncoder(ModelMixin, ConfigMixin):
    """Head-rotation speed per frame -> speed tokens for the temporal modules.

    Each frame's speed w becomes d bucket activations tanh((w - c_d) / r_d * 3); a window of
    +-m frames of those goes through an MLP.
    """

    @register_to_config
    def __init__(self, centers: tuple[float, ...] | None = None, radii: tuple[float, ...] | None = None,
                 window: int = 2, hidden_dim: int = 512, tokens: int = 1, context_dim: int = 768,
                 max_speed: float = 0.08) -> None:  # fmt: skip
        super().__init__()
        if centers is None or radii is None:
            centers, radii = default_speed_buckets(9, max_speed)
            self.register_to_config(centers=centers, radii=radii)
        if len(centers) != len(radii):
            raise ValueError(f"speed encoder: {len(centers)} centers but {len(radii)} radii")
        self.register_buffer("bucket_centers", torch.tensor(centers, dtype=torch.float32), persistent=False)
        self.register_buffer("bucket_radii", torch.tensor(radii, dtype=torch.float32), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear((2 * window + 1) * len(centers), hidden_dim), nn.SiLU(),
            nn.Linear(hidden_dim, tokens * context_dim),
        )  # fmt: skip

    def buckets(self, speeds: torch.Tensor) -> torch.Tensor:
        """(samples, frames) speeds -> (samples, frames, d) bucket activations."""
        return torch.tanh(
            (speeds.float()[..., None] - self.bucket_centers.float()) / self.bucket_radii.float() * 3
        )

    def forward(self, speeds: torch.Tensor) -> torch.Tensor:
        m = self.config.window
        act = self.buckets(speeds)
        padded = F.pad(act.transpose(1, 2), (m, m), mode="replicate").transpose(1, 2)
        windows = padded.unfold(1, 2 * m + 1, 1)  # (samples, frames, d, 2m+1)
        out = self.mlp(windows.transpose(2, 3).flatten(2).to(self.mlp[0].weight.dtype))
        return out.view(*speeds.shape, self.config.tokens, self.config.context_dim)
