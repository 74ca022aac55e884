"""Tiny public components (the real diffusers/transformers classes at toy size) and EMO weights.

`save_components(folder)` writes what `emo weights init` reads, laid out like the public
downloads: an SD1.5-style folder (unet/ + scheduler/), a VAE, a motion adapter and a wav2vec 2.0
model, each with `save_pretrained` after `torch.manual_seed(0)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CHANNELS = (32, 64)


def save_components(folder: Path) -> dict[str, Path]:
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    sd = folder / "sd15"
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    ).save_pretrained(sd / "unet")
    DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    ).save_pretrained(sd / "scheduler")
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    ).save_pretrained(folder / "vae")
    MotionAdapter(
        block_out_channels=CHANNELS,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=16,
        motion_max_seq_length=32,
    ).save_pretrained(folder / "motion")
    Wav2Vec2Model(
        Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16, 16),
            conv_stride=(5, 4),
            conv_kernel=(10, 4),
            num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2,
            num_feat_extract_layers=2,
        )
    ).save_pretrained(folder / "wav2vec")
    return {
        "sd15": sd,
        "vae": folder / "vae",
        "motion_adapter": folder / "motion",
        "wav2vec": folder / "wav2vec",
    }


def make_weights(folder: Path) -> Path:
    """A tiny EMO weights folder assembled by the real `init_weights`."""
    from emo_cli.backends.emo.assemble import init_weights

    sources = save_components(folder / "components")
    out = folder / "weights"
    init_weights(**sources, out=out, audio_tokens=4, hidden_dim=32)
    return out


def activate(model, seed: int = 0, std: float = 0.05) -> None:
    """Give every zero-initialised EMO output layer small random weights (a stand-in for training)."""
    torch.manual_seed(seed)
    layers = [*model.backbone.audio_attention.values(), *model.backbone.speed_attention.values()]
    with torch.no_grad():
        for layer in layers:
            layer.attn.to_out[0].weight.normal_(0, std)
        model.face_locator.conv_out.weight.normal_(0, std)


def random_image(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def audio_features(pipeline, seed: int, frames: int = 12, fps: int = 25) -> torch.Tensor:
    """Windowed features of one clip of random speech-band noise."""
    from emo_cli.backends.emo.audio import AudioFeatures

    rng = np.random.default_rng(seed)
    audio = (rng.normal(0, 0.2, int(16000 * frames / fps) + 1600)).astype(np.float32)
    features = AudioFeatures(
        pipeline.model.audio_encoder, audio, sample_rate=16000, fps=fps, num_frames=frames + 4,
        layers=int(pipeline.model.audio_proj.config.layers),
    )  # fmt: skip
    return features.window(0, frames, 2)
