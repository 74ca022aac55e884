"""The EMO networks as diffusers models: each saves and loads as config.json + safetensors.

* `EmoBackbone`: the denoising network, a diffusers `UNetMotionModel` (SD1.5 2D UNet plus
  AnimateDiff temporal modules) with the EMO layers attached: reference-attention in every
  spatial self-attention, an audio-attention after each of them, motion-frame features joined
  to every temporal module along the frame axis, and speed cross-attention inside every temporal
  transformer block.
* ReferenceNet: a plain diffusers `UNet2DConditionModel`; `ReferenceRecorder` records its
  self-attention inputs and the features the backbone's temporal modules need, in ONE pass over
  the reference image and the motion frames per clip.
* `FaceLocator`, `AudioProjection`, `SpeedEncoder`, `IdentityProjection`: the small conditioning
  encoders.
* `RegionAudioModule`: Hallo's audio layer (a transformer whose cross-attention is split into
  full/face/lip regions by masks, each through a 1x1 zero-conv, weighted by `motion_scale`).
  diffusers has no such block; it is built from diffusers' `Attention` and `FeedForward` with
  Hallo's parameter names, so its weights load without renaming inside the module.

Hallo (fudan-generative-vision/hallo, the closest open model of the family) differs from EMO in
several places; each difference is a config value of `EmoBackbone` saved with the weights (see
its docstring), so one code path serves EMO's defaults and imported Hallo/Hallo2 checkpoints.

Every EMO layer added to a pretrained network ends in a zero-initialised projection, so a model
assembled from SD1.5 + AnimateDiff weights starts out computing exactly what they compute.
The conditions reach the layers through one `Conditions` object the processors and hooks share
(diffusers drops `cross_attention_kwargs` a processor does not name, so no kwargs are used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D, UNetMotionModel
from torch import nn

# Values a config field may take. The first is EMO's; the one named in the comment is Hallo's.
CROSS_ATTENTION_CONTEXTS = ("none", "identity")  # Hallo: identity tokens (ArcFace) in the text slot
FIRST_CLIP_MOTION = ("zeros", "reference")  # Hallo: the reference repeated
FACE_LOCATOR_TARGETS = ("latent", "conv_in")  # Hallo: added after conv_in
TEMPORAL_NORMS = ("joint", "per_frame")  # Hallo: GroupNorm of each frame on its own
MOTION_FEATURES = ("block_output", "reference_tokens")  # Hallo: the ReferenceNet's norm1 tokens
UNCONDITIONAL_AUDIO = ("drop", "zero_tokens")  # Hallo: zero tokens through the running audio layer
REFERENCE_CONTEXTS = ("empty", "per_sample", "cfg_tiled")  # Hallo: batch rows meet contexts u, c, u, c, ...
UNCONDITIONAL_CONTEXTS = ("zero_tokens", "projected_zeros")  # Hallo: the projection of a zero embedding
REFERENCE_ROWS = ("per_sample", "alternating")  # Hallo: frame j of a sample reads row j mod samples
BANK_DTYPES = (None, "float16")  # Hallo: the reference bank is rounded to float16
# "per_frame": each frame's temporal tokens attend to that frame's own speed tokens (the first
# weights; with one token the softmax is 1 and the query/key weights never matter);
# "frame_axis": every frame attends to the speed tokens of all frames of its window (the paper's
# cross-attention along the frame axis of the temporal layers; what training writes).
SPEED_ATTENTION = ("per_frame", "frame_axis")
SPEED_UNITS = ("rad/frame", "degrees/frame")  # rad/frame: the uncalibrated first buckets


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
    Training drops the reference and the audio independently: `keep_reference` / `keep_audio`,
    when set, replace `keep` for that path with the same semantics (the face locator's features
    are zeroed by the caller, as inference does).
    """

    # block -> (1 | samples | samples * frames, hw, c): one reference row for all, per sample, per row
    reference: dict[str, torch.Tensor] = field(default_factory=dict)
    # motion module -> (n, c, h, w) for every sample, or (samples, n, c, h, w) per sample
    motion: dict[str, torch.Tensor] = field(default_factory=dict)
    audio: torch.Tensor | None = None  # (samples * frames, tokens, dim)
    speed: torch.Tensor | None = None  # (samples, n + frames, tokens, dim)
    keep: torch.Tensor | None = None  # (samples,) bool
    keep_reference: torch.Tensor | None = None  # (samples,) bool, overrides `keep` for the reference
    keep_audio: torch.Tensor | None = None  # (samples,) bool, overrides `keep` for the audio
    frames: int = 1
    context: torch.Tensor | None = None  # (samples, tokens, dim): the cross-attention context
    # per level L (0 = full latent size): (full, face, lip) masks, each (1 | rows, h_L * w_L)
    region_masks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
    motion_scale: tuple[float, float, float] | None = None  # weights of the full/face/lip audio

    def keep_rows(self, rows: int, dtype: torch.dtype, path: str | None = None) -> torch.Tensor | None:
        """(rows, 1, 1) keep weights of `path` ("reference", "audio" or None for `keep`)."""
        keep = getattr(self, f"keep_{path}") if path else None
        keep = self.keep if keep is None else keep
        if keep is None:
            return None
        per_sample = rows // keep.shape[0]
        return keep.repeat_interleave(per_sample).to(dtype).view(rows, 1, 1)


class ReferenceReadProcessor:
    """Backbone self-attention over concat([x, reference tokens]) along the token axis.

    Unconditional rows (CFG) attend over their own tokens only, in a separate SDPA call over
    half the keys (Hallo computes them with the reference first, then again without).
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
        ref = ref.to(hidden_states.dtype)
        if ref.shape[0] == 1:
            ref = ref.expand(rows, -1, -1)
        elif ref.shape[0] != rows:  # one row per sample: the same for each of its frames
            ref = ref.repeat_interleave(rows // ref.shape[0], dim=0)
        keep = self.conditions.keep_rows(rows, hidden_states.dtype, "reference")
        if keep is None or bool(keep.all()):
            return attention(attn, hidden_states, torch.cat([hidden_states, ref], dim=1))
        keep = keep.view(-1).bool()
        out = torch.empty_like(hidden_states)
        plain = hidden_states[~keep]
        out[~keep] = attention(attn, plain, plain)
        if bool(keep.any()):
            kept = hidden_states[keep]
            out[keep] = attention(attn, kept, torch.cat([kept, ref[keep]], dim=1))
        return out


class ReferenceWriteProcessor:
    """ReferenceNet self-attention that records its input tokens (the block's norm1 output).

    `stop` is called after recording; it raises once everything the backbone reads has been
    recorded, so the ReferenceNet's unread tail (the rest of its last block, its output layers)
    never runs.
    """

    def __init__(self, block: str, bank: dict[str, torch.Tensor], stop=None) -> None:
        self.block = block
        self.bank = bank
        self.stop = stop

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:  # fmt: skip
        self.bank[self.block] = hidden_states
        if self.stop is not None:
            self.stop()
        return attention(attn, hidden_states, hidden_states)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: (b, c, f, h, w) is normalised as (b * f, c, h, w).

    AnimateDiff's and Hallo's temporal modules were trained this way (and always with 32 groups);
    diffusers' `AnimateDiffTransformer3D` normalises over all frames together.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return super().forward(x)
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)
        return super().forward(frames).view(b, f, c, h, w).transpose(1, 2)


def _skip_temporal(hidden_states, *args, **kwargs):
    """Stands in for the forward of a temporal module that Hallo's weights never ran."""
    return hidden_states


class RegionAudioBlock(nn.Module):
    """Self-attention, then three audio cross-attentions masked to the full/face/lip regions."""

    def __init__(self, dim: int, heads: int, audio_dim: int) -> None:
        from diffusers.models.attention import FeedForward

        super().__init__()
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=head_dim)
        self.norm2 = nn.LayerNorm(dim)
        for i in range(3):
            setattr(self, f"attn2_{i}", Attention(query_dim=dim, cross_attention_dim=audio_dim, heads=heads,
                                                  dim_head=head_dim))  # fmt: skip
        self.zero_conv_full = nn.Conv2d(dim, dim, kernel_size=1)
        self.zero_conv_face = nn.Conv2d(dim, dim, kernel_size=1)
        self.zero_conv_lip = nn.Conv2d(dim, dim, kernel_size=1)
        for conv in (self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    @staticmethod
    def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        # A 1x1 convolution over the token grid is a linear map per token, for any grid shape.
        return F.linear(x, conv.weight.flatten(1), conv.bias)

    def forward(self, x, tokens, masks, scale) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        normed = self.norm2(x)
        full, face, lip = (m.to(x.dtype)[:, :, None] for m in masks)
        full_out = self._pointwise(self.zero_conv_full, self.attn2_0(normed, encoder_hidden_states=tokens) * full)
        face_out = self._pointwise(self.zero_conv_face, self.attn2_1(normed, encoder_hidden_states=tokens) * face)
        lip_out = self._pointwise(self.zero_conv_lip, self.attn2_2(normed, encoder_hidden_states=tokens) * lip)
        s = (1.0, 1.0, 1.0) if scale is None else scale
        x = s[0] * full_out + s[1] * face_out + s[2] * lip_out + x
        return self.ff(self.norm3(x)) + x


class RegionAudioModule(nn.Module):
    """Hallo's audio layer after a spatial transformer: GroupNorm, 1x1 in, `RegionAudioBlock`, 1x1 out,
    residual. Its output layers (the zero-convs) start at zero, so it starts as the identity."""

    def __init__(self, dim: int, heads: int, audio_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([RegionAudioBlock(dim, heads, audio_dim)])
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, hidden, tokens, masks, scale) -> torch.Tensor:
        rows, channels, h, w = hidden.shape
        x = self.proj_in(self.norm(hidden)).permute(0, 2, 3, 1).reshape(rows, h * w, channels)
        for block in self.transformer_blocks:
            x = block(x, tokens, masks, scale)
        x = self.proj_out(x.reshape(rows, h, w, channels).permute(0, 3, 1, 2).contiguous())
        return x + hidden


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


def _has_attention(block) -> bool:
    return bool(getattr(block, "attentions", None))


def motion_sources(backbone_unet: UNetMotionModel, features: str = "block_output",
                   plain_block_temporal: bool = True) -> dict[str, str]:  # fmt: skip
    """Each temporal module's name -> the ReferenceNet layer whose motion-frame rows it is given.

    "block_output": the output of the layer in front of the temporal module (a spatial
    transformer, or a resnet in the blocks without attention), which has its input's shape (EMO).
    "reference_tokens": the norm1 tokens of the spatial transformer block in front of it, the
    reference bank itself (Hallo); the blocks without attention get none.
    """
    sources: dict[str, str] = {}
    for prefix, blocks in (
        ("down_blocks", backbone_unet.down_blocks),
        ("up_blocks", backbone_unet.up_blocks),
    ):
        for i, block in enumerate(blocks):
            if not _has_attention(block) and (features == "reference_tokens" or not plain_block_temporal):
                continue
            for j in range(len(block.motion_modules)):
                if features == "reference_tokens":
                    sources[f"{prefix}.{i}.motion_modules.{j}"] = f"{prefix}.{i}.attentions.{j}.transformer_blocks.0"
                else:
                    source = "attentions" if _has_attention(block) else "resnets"
                    sources[f"{prefix}.{i}.motion_modules.{j}"] = f"{prefix}.{i}.{source}.{j}"
    mid = backbone_unet.mid_block
    if mid is not None and hasattr(mid, "motion_modules"):
        for j in range(len(mid.motion_modules)):
            tail = ".transformer_blocks.0" if features == "reference_tokens" else ""
            sources[f"mid_block.motion_modules.{j}"] = f"mid_block.attentions.{j}{tail}"
    return sources


def region_audio_levels(backbone_unet: UNetMotionModel) -> dict[str, int]:
    """Each spatial transformer of the backbone -> the mask level its audio layer reads.

    Level L is the latent size halved L times: down block i reads i, the mid block the last
    level, up block i the mirror of its down block (as in Hallo).
    """
    last = len(backbone_unet.down_blocks) - 1
    levels: dict[str, int] = {}
    for i, block in enumerate(backbone_unet.down_blocks):
        for j in range(len(getattr(block, "attentions", None) or ())):
            levels[f"down_blocks.{i}.attentions.{j}"] = i
    mid = backbone_unet.mid_block
    for j in range(len(getattr(mid, "attentions", None) or ())):
        levels[f"mid_block.attentions.{j}"] = last
    for i, block in enumerate(backbone_unet.up_blocks):
        for j in range(len(getattr(block, "attentions", None) or ())):
            levels[f"up_blocks.{i}.attentions.{j}"] = last - i
    return levels


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
            token, so the slot adds only its output bias, as EMO has no text; "identity": the
            identity tokens of the portrait, given per sample in `Conditions.context`).
        audio_attention_regions: 1 = one audio-attention after each spatial transformer block
            (EMO); 3 = Hallo's `RegionAudioModule` after each spatial transformer.
        speed_layers: EMO's speed cross-attention inside the temporal modules (Hallo has none).
        unconditional_audio: "drop": the unconditional CFG half skips the audio layers (EMO);
            "zero_tokens": it runs them on all-zero audio tokens (Hallo).
        temporal_norm / temporal_norm_groups: how the temporal modules' GroupNorm normalises
            ("per_frame" with 32 groups in AnimateDiff and Hallo; None = the UNet's group count).
        plain_block_temporal: run the temporal modules of the blocks without attention. Hallo's
            weights were run without them (its inference takes a training-mode branch that skips them).
        motion_features: what the temporal modules see of the motion frames (see `motion_sources`).
        unconditional_context: the unconditional CFG half's cross-attention context with
            "identity" ("projected_zeros": the identity projection of a zero embedding, Hallo).
        reference_context: the ReferenceNet's cross-attention context ("empty": one zero token;
            "per_sample": each sample's rows its own context; "cfg_tiled": the CFG contexts tiled
            over its batch of [reference, motion frames] per sample, Hallo's u, c, u, c, ... pairing).
        reference_rows: which sample's reference a frame reads ("alternating": frame row p reads
            sample p mod samples, Hallo's tiling of its bank).
        reference_bank_dtype: the reference bank is rounded to this dtype (Hallo: float16).
        speed_attention_mode: how the temporal modules read the speed tokens (see `SPEED_ATTENTION`;
            "per_frame" keeps the first weights' behaviour, training writes "frame_axis").
        motion_patch_drop: Hallo2's long-video inference: this fraction of the motion frames'
            pixels outside the face region (random per clip, the same for every motion frame) is
            set to 0 before they are VAE-encoded; None = off (Hallo).
        hallo_eval_mode: compute what Hallo's UNet computes in eval mode (not what its inference
            runs): motion frames and motion_scale reach only the mid block. With
            plain_block_temporal, it reproduces Hallo's eval-mode variant; off by default.

    While autograd records (training), the conditions of a call stay on the module until the
    next call or `release_conditions()`: gradient checkpointing re-runs blocks during backward,
    and their hooks must read the same conditions then.
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
        speed_layers: bool = True,
        unconditional_audio: str = "drop",
        temporal_norm: str = "joint",
        temporal_norm_groups: int | None = None,
        plain_block_temporal: bool = True,
        motion_features: str = "block_output",
        unconditional_context: str = "zero_tokens",
        reference_context: str = "empty",
        reference_rows: str = "per_sample",
        reference_bank_dtype: str | None = None,
        speed_attention_mode: str = "per_frame",
        motion_patch_drop: float | None = None,
        hallo_eval_mode: bool = False,
    ) -> None:
        super().__init__()
        choices = {
            "first_clip_motion": (first_clip_motion, FIRST_CLIP_MOTION),
            "face_locator_target": (face_locator_target, FACE_LOCATOR_TARGETS),
            "cross_attention_context": (cross_attention_context, CROSS_ATTENTION_CONTEXTS),
            "audio_attention_regions": (audio_attention_regions, (1, 3)),
            "unconditional_audio": (unconditional_audio, UNCONDITIONAL_AUDIO),
            "temporal_norm": (temporal_norm, TEMPORAL_NORMS),
            "motion_features": (motion_features, MOTION_FEATURES),
            "reference_context": (reference_context, REFERENCE_CONTEXTS),
            "unconditional_context": (unconditional_context, UNCONDITIONAL_CONTEXTS),
            "reference_rows": (reference_rows, REFERENCE_ROWS),
            "reference_bank_dtype": (reference_bank_dtype, BANK_DTYPES),
            "speed_attention_mode": (speed_attention_mode, SPEED_ATTENTION),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if motion_frames < 0:
            raise ValueError(f"motion_frames must be >= 0, got {motion_frames}")
        if motion_patch_drop is not None and not 0 <= motion_patch_drop < 1:
            raise ValueError(f"motion_patch_drop must be in [0, 1), got {motion_patch_drop}")
        self.unet = UNetMotionModel.from_config(unet_config or {})
        self.audio_attention = nn.ModuleDict()
        self.speed_attention = nn.ModuleDict()
        self.region_audio = nn.ModuleDict()
        self.conditions = Conditions()
        self._face_features: torch.Tensor | None = None
        self._region_levels = region_audio_levels(self.unet)
        groups = int(self.unet.config.norm_num_groups)
        for name, module in self.unet.named_modules():
            if isinstance(module, AnimateDiffTransformer3D):
                norm = module.norm
                count = temporal_norm_groups or norm.num_groups
                cls = FrameGroupNorm if temporal_norm == "per_frame" else nn.GroupNorm
                module.norm = cls(count, norm.num_channels, eps=norm.eps, affine=norm.affine)
            if not isinstance(module, BasicTransformerBlock):
                continue
            dim, heads = module.attn1.query_dim, module.attn1.heads
            if ".motion_modules." in name:
                if speed_layers:
                    self.speed_attention[_module_key(name)] = CrossAttentionLayer(dim, speed_context_dim, heads)
            elif audio_attention_regions == 1:
                self.audio_attention[_module_key(name)] = CrossAttentionLayer(dim, audio_context_dim, heads)
        if audio_attention_regions == 3:
            modules = dict(self.unet.named_modules())
            for name in self._region_levels:
                block = modules[name].transformer_blocks[0]
                self.region_audio[_module_key(name)] = RegionAudioModule(
                    block.attn1.query_dim, block.attn1.heads, audio_context_dim, groups
                )
        if not plain_block_temporal:
            for block in (*self.unet.down_blocks, *self.unet.up_blocks):
                if not _has_attention(block):
                    for motion_module in block.motion_modules:
                        motion_module.forward = _skip_temporal
        self._attach()

    # -- wiring -----------------------------------------------------------------------------------
    def _attach(self) -> None:
        cond = self.conditions
        for name, module in self.unet.named_modules():
            if isinstance(module, BasicTransformerBlock) and ".motion_modules." not in name:
                module.attn1.set_processor(ReferenceReadProcessor(name, cond))
                key = _module_key(name)
                if key in self.audio_attention:
                    module.register_forward_hook(self._audio_hook(self.audio_attention[key]))
            elif isinstance(module, BasicTransformerBlock):
                key = _module_key(name)
                if key in self.speed_attention:
                    module.register_forward_hook(self._speed_hook(self.speed_attention[key]))
            elif isinstance(module, AnimateDiffTransformer3D):
                module.register_forward_pre_hook(self._motion_in_hook(name), with_kwargs=True)
                module.register_forward_hook(self._motion_out_hook(name))
            if _module_key(name) in self.region_audio:
                module.register_forward_hook(self._region_audio_hook(name))
        self.unet.conv_in.register_forward_hook(self._face_hook)

    def _audio_hook(self, layer: CrossAttentionLayer):
        def hook(module, args, output):
            if self.conditions.audio is None:
                return output
            keep = self.conditions.keep_rows(output.shape[0], output.dtype, "audio")
            return layer(output, self.conditions.audio, keep)

        return hook

    def _region_audio_hook(self, name: str):
        layer, level = self.region_audio[_module_key(name)], self._region_levels[name]
        scaled = not (self.config.hallo_eval_mode and not name.startswith("mid_block."))

        def hook(module, args, output):
            cond = self.conditions
            if cond.audio is None or cond.region_masks is None:
                return output
            hidden = output[0] if isinstance(output, tuple) else output
            scale = cond.motion_scale if scaled else None
            out = layer(hidden, cond.audio.to(hidden.dtype), cond.region_masks[level], scale)
            if self.config.unconditional_audio == "drop":
                keep = cond.keep_rows(out.shape[0], out.dtype, "audio")
                if keep is not None:
                    out = torch.where(keep.bool().view(-1, 1, 1, 1), out, hidden)
            return (out, *output[1:]) if isinstance(output, tuple) else out

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
            if self.config.speed_attention_mode == "frame_axis":
                # Every frame of every position queries the speed tokens of all the window's
                # frames: the queries of one sample share its keys, so (samples, hw * frames, c)
                # is the same attention without repeating the keys over positions.
                x = layer(output.reshape(samples, hw * frames, channels), speed.flatten(1, 2))
                return x.view(rows, frames, channels)
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
            motion = motion.to(hidden.dtype)
            if motion.dim() == 4:  # the same motion frames for every sample
                motion = motion.unsqueeze(0).expand(samples, -1, -1, -1, -1)
            joined = torch.cat([motion, hidden.view(samples, frames, *hidden.shape[1:])], dim=1)
            kwargs["num_frames"] = frames + motion.shape[1]
            return (joined.flatten(0, 1),), kwargs

        return hook

    def _motion_out_hook(self, name: str):
        def hook(module, args, output):
            motion = self.conditions.motion.get(name)
            if motion is None:
                return output
            n = motion.shape[-4]
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
        if conditions.context is not None:
            context = conditions.context.to(sample.dtype).repeat_interleave(frames, dim=0)
        else:
            context = self.empty_context(samples * frames, sample.dtype, sample.device)
        for name in CONDITION_FIELDS:
            setattr(self.conditions, name, getattr(conditions, name))
        self.conditions.frames = frames
        self._face_features = face
        try:
            return self.unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]
        finally:
            # Kept while autograd records: backward may re-run checkpointed blocks (class docstring).
            if not torch.is_grad_enabled():
                self.release_conditions()

    def release_conditions(self) -> None:
        """Drop the conditions of the last call (their tensors are freed with them)."""
        self.conditions.reference, self.conditions.motion = {}, {}
        for name in CONDITION_FIELDS:
            if name not in ("reference", "motion"):
                setattr(self.conditions, name, None)
        self._face_features = None

    def empty_context(self, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """What fills SD's text cross-attention slot: one zero token per row (EMO has no text)."""
        return torch.zeros(rows, 1, self.unet.config.cross_attention_dim, dtype=dtype, device=device)


CONDITION_FIELDS = ("reference", "motion", "audio", "speed", "keep", "keep_reference", "keep_audio",
                    "region_masks", "motion_scale")  # fmt: skip


class _ReferenceComplete(Exception):
    """Raised inside the ReferenceNet once everything the backbone reads has been recorded."""


class ReferenceRecorder:
    """Runs a ReferenceNet (`UNet2DConditionModel`) once and returns what the backbone reads.

    It records the self-attention input tokens (norm1 output) of every transformer block, keyed
    by block name (the same names as in the backbone), and the output of each motion source
    layer (see `motion_sources`), for every row of its batch; the pipeline picks the rows. The
    pass stops as soon as the last of them is recorded: what comes after is never read.
    """

    def __init__(self, reference_unet, sources: dict[str, str]) -> None:
        self.unet = reference_unet
        self._tokens: dict[str, torch.Tensor] = {}
        self._features: dict[str, torch.Tensor] = {}
        self.sizes: dict[str, tuple[int, int]] = {}  # block -> the (h, w) grid of its tokens
        modules = dict(reference_unet.named_modules())
        blocks = [name for name, module in modules.items() if isinstance(module, BasicTransformerBlock)]
        self._feature_sources = {source: target for target, source in sources.items() if source not in blocks}
        for name in blocks:
            modules[name].attn1.set_processor(ReferenceWriteProcessor(name, self._tokens, self._check_complete))
            parent = name.rsplit(".transformer_blocks.", 1)[0]
            if parent in modules:
                modules[parent].register_forward_pre_hook(self._size_hook(name))
        self._expected_tokens = len(blocks)
        self._grad = False
        self.block_names = blocks
        self.stop_early = True
        for target, source in sources.items():
            if source not in modules:
                raise ValueError(f"the ReferenceNet has no layer {source} for the backbone's {target}")
            if source in self._feature_sources:
                modules[source].register_forward_hook(self._feature_hook(target))

    def _size_hook(self, block: str):
        def hook(module, args):
            self.sizes[block] = tuple(args[0].shape[-2:])

        return hook

    def _check_complete(self) -> None:
        if self._grad or not self.stop_early:
            return
        if len(self._tokens) == self._expected_tokens and len(self._features) == len(self._feature_sources):
            raise _ReferenceComplete

    def _feature_hook(self, target: str):
        def hook(module, args, output):
            self._features[target] = output[0] if isinstance(output, tuple) else output
            self._check_complete()

        return hook

    def record(self, latents: torch.Tensor, context: torch.Tensor, grad: bool = False) -> tuple[dict, dict]:
        """(tokens per transformer block, features per motion target), every row of `latents`.

        With `grad` (training the ReferenceNet) autograd records the pass, and the pass runs to
        the end: stopping early would raise again when checkpointing re-runs the last block in
        backward.
        """
        self._tokens.clear()
        self._features.clear()
        timestep = torch.zeros((), dtype=torch.long, device=latents.device)
        self._grad = grad
        try:
            with torch.set_grad_enabled(grad):
                self.unet(latents, timestep, encoder_hidden_states=context, return_dict=False)
        except _ReferenceComplete:
            pass
        finally:
            self._grad = False
        tokens, features = dict(self._tokens), dict(self._features)
        self._tokens.clear()
        self._features.clear()
        return tokens, features

    def __call__(self, latents: torch.Tensor, empty_context: torch.Tensor) -> tuple[dict, dict]:
        """EMO's pass over [reference, motion frames]: (reference bank of row 0, motion rows 1..n)."""
        tokens, features = self.record(latents, empty_context)
        reference = {name: t[:1] for name, t in tokens.items()}
        motion = {name: feats[1:] for name, feats in features.items()}
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

    Input (frames, window, layers, feature_dim) with window = 2m + 1 (m = 2 in EMO). `activation`
    is "silu" (EMO's start point) or "relu" (Hallo's AudioProjModel).
    """

    @register_to_config
    def __init__(self, window: int = 5, layers: int = 12, feature_dim: int = 768, hidden_dim: int = 512,
                 tokens: int = 32, context_dim: int = 768, activation: str = "silu") -> None:  # fmt: skip
        super().__init__()
        acts = {"silu": nn.SiLU, "relu": nn.ReLU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {tuple(acts)}, got {activation!r}")
        act = acts[activation]
        self.proj = nn.Sequential(
            nn.Linear(window * layers * feature_dim, hidden_dim), act(),
            nn.Linear(hidden_dim, hidden_dim), act(),
            nn.Linear(hidden_dim, tokens * context_dim),
        )  # fmt: skip
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(features.flatten(1))
        return self.norm(tokens.view(features.shape[0], self.config.tokens, self.config.context_dim))


class IdentityProjection(ModelMixin, ConfigMixin):
    """A face-identity embedding (ArcFace, 512-d in Hallo) -> `tokens` cross-attention tokens.

    Hallo's ImageProjModel: one linear layer, reshaped to tokens, LayerNorm. The unconditional
    CFG half uses the projection of a zero embedding, which is not zero (bias and LayerNorm).
    """

    @register_to_config
    def __init__(self, embedding_dim: int = 512, tokens: int = 4, context_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Linear(embedding_dim, tokens * context_dim)
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """(samples, embedding_dim) -> (samples, tokens, context_dim)."""
        out = self.proj(embedding).reshape(-1, self.config.tokens, self.config.context_dim)
        return self.norm(out)


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

    Calibrated weights (written by training) hold the dataset's buckets in degrees per frame
    (`unit`) and its speed percentiles, so a render's `head_motion` in [0, 1] asks for the
    speed at that quantile of the footage (`speed_for_head_motion`). Uncalibrated weights keep
    the first guess: `head_motion * max_speed` rad/frame.
    """

    @register_to_config
    def __init__(self, centers: tuple[float, ...] | None = None, radii: tuple[float, ...] | None = None,
                 window: int = 2, hidden_dim: int = 512, tokens: int = 1, context_dim: int = 768,
                 max_speed: float = 0.08, unit: str = "rad/frame",
                 percentiles: tuple[float, ...] | None = None) -> None:  # fmt: skip
        super().__init__()
        if unit not in SPEED_UNITS:
            raise ValueError(f"unit must be one of {SPEED_UNITS}, got {unit!r}")
        if percentiles is not None and (len(percentiles) < 2 or list(percentiles) != sorted(percentiles)):
            raise ValueError("percentiles must be at least two speeds in ascending order")
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

    def speed_for_head_motion(self, head_motion: float) -> float:
        """The constant speed a render's `head_motion` (0 = stillest, 1 = liveliest) asks for."""
        h = min(1.0, max(0.0, float(head_motion)))
        table = self.config.percentiles
        if table is None:
            return h * float(self.config.max_speed)
        return float(np.interp(h * (len(table) - 1), np.arange(len(table)), np.asarray(table, dtype=np.float64)))

    def calibrate(self, table: dict) -> None:
        """Take a dataset's speed table (`emo dataset prepare`'s index "speed"): buckets and percentiles."""
        buckets = table["buckets"]
        if len(buckets["centers"]) != len(self.config.centers):
            raise ValueError(f"the dataset has {len(buckets['centers'])} speed buckets, the speed encoder "
                             f"{len(self.config.centers)}")  # fmt: skip
        centers, radii = [float(c) for c in buckets["centers"]], [float(r) for r in buckets["radii"]]
        self.register_to_config(centers=centers, radii=radii, unit=table["unit"],
                                percentiles=[float(p) for p in table["percentiles"]],
                                max_speed=float(table["percentiles"][-1]))  # fmt: skip
        device = self.bucket_centers.device
        self.bucket_centers = torch.tensor(centers, dtype=torch.float32, device=device)
        self.bucket_radii = torch.tensor(radii, dtype=torch.float32, device=device)

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
