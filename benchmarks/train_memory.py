"""Parameters each training stage trains and holds at SD1.5 sizes, and the memory they imply.

Builds the EMO parts at SD1.5 + AnimateDiff v1-5-2 sizes on torch's meta device (no memory, no
download), counts what `emo train` trains in each stage (`emo_cli.training.train.trainable`)
and prints the bytes of AdamW with float32 master weights (16 per trained parameter: weights,
gradients, two moments) and of the frozen parts held in float32 (4 per parameter, VAE and
wav2vec 2.0 base included). Activations come on top and are not counted here.

    python benchmarks/train_memory.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emo_cli.backends.emo.modules import AudioProjection, EmoBackbone, FaceLocator, SpeedEncoder
    from emo_cli.training.train import trainable

    with torch.device("meta"):
        unet = dict(cross_attention_dim=768, use_motion_mid_block=True, motion_max_seq_length=32,
                    motion_num_attention_heads=8)  # fmt: skip
        parts = {
            "reference_unet": UNet2DConditionModel(cross_attention_dim=768),
            "backbone": EmoBackbone(unet_config=unet, speed_attention_mode="frame_axis"),
            "face_locator": FaceLocator(),
            "audio_proj": AudioProjection(),
            "speed_encoder": SpeedEncoder(),
        }
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2)  # sd-vae-ft-mse sizes
        wav2vec = Wav2Vec2Model(Wav2Vec2Config())  # the base model's sizes
    vae_count = sum(p.numel() for p in vae.parameters())
    wav2vec_count = sum(p.numel() for p in wav2vec.parameters())
    counts = {f"{p}.{n}": t.numel() for p, m in parts.items() for n, t in m.named_parameters()}
    total = sum(counts.values())
    print(f"EMO parts at SD1.5 sizes: {total / 1e9:.3f} B parameters (+ VAE {vae_count / 1e6:.0f} M, "
          f"wav2vec {wav2vec_count / 1e6:.0f} M, frozen in every stage)")  # fmt: skip
    gib = 2**30
    for stage in ("stage1", "stage2", "stage3"):
        trained = sum(v for k, v in counts.items() if trainable(stage, k))
        frozen = total - trained + vae_count + wav2vec_count
        print(f"{stage}: trains {trained / 1e9:.3f} B -> {trained * 16 / gib:.1f} GiB (AdamW, fp32 master weights); "
              f"frozen {frozen / 1e9:.3f} B -> {frozen * 4 / gib:.1f} GiB (fp32); activations not included")  # fmt: skip


if __name__ == "__main__":
    main()
