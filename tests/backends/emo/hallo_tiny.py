"""A tiny Hallo download, laid out like `hf download fudan-generative-ai/hallo`, from the shared
reference set's state dicts (Hallo's own modules at a tiny size, seeded random weights), with a
tiny wav2vec 2.0 and ONNX stand-ins for the face models and the vocal separator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from onnx_standins import write_face_models, write_separator

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "hallo-reference"
NET_PARTS = ("reference_unet", "denoising_unet", "face_locator", "imageproj", "audioproj")


def load_reference_set():
    """The Hallo reference set (`find_reference`), loaded; skipped where it is not found, and a
    failure under CI, which must run the parity tests."""
    from emo_cli.backends.emo.hallo_reference import ReferenceSet, find_reference

    root = find_reference()
    if root is None:
        message = "Hallo reference set not found (set EMO_HALLO_REFERENCE or put it at <repo>/../shared/hallo-reference)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return ReferenceSet.load(root)


def reference_configs() -> dict:
    return json.loads((REFERENCE / "configs.json").read_text())["configs"]


def write_hallo_download(root: Path, variant: str = "hallo", separator: bool = True) -> Path:
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    configs = reference_configs()
    flat = {
        f"{part}.{key}": value
        for part in NET_PARTS
        for key, value in load_file(REFERENCE / f"{part}.safetensors").items()
    }
    (root / variant).mkdir(parents=True, exist_ok=True)
    torch.save(flat, root / variant / "net.pth")
    unet = root / "stable-diffusion-v1-5" / "unet"
    unet.mkdir(parents=True, exist_ok=True)
    (unet / "config.json").write_text(json.dumps(configs["unet_base_config"]))
    vae = AutoencoderKL.from_config({k: v for k, v in configs["vae"].items() if not k.startswith("_")})
    vae.load_state_dict(load_file(REFERENCE / "vae.safetensors"), strict=True)
    vae.save_pretrained(root / "sd-vae-ft-mse")
    torch.manual_seed(0)
    audio = configs["audioproj"]  # 2 hidden states of 32 channels per frame
    Wav2Vec2Model(
        Wav2Vec2Config(
            hidden_size=int(audio["channels"]), num_hidden_layers=int(audio["blocks"]), num_attention_heads=2,
            intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, num_feat_extract_layers=2,
        )
    ).save_pretrained(root / "wav2vec" / "wav2vec2-base-960h")  # fmt: skip
    write_face_models(root / "face_analysis" / "models", dim=int(configs["imageproj"]["clip_embeddings_dim"]))
    if separator:
        write_separator(root / "audio_separator" / "Kim_Vocal_2.onnx", gain=0.8)
    return root


def write_hallo_config(
    path: Path, variant: str = "hallo", clip_frames: int = 16, motion_frames: int = 2
) -> Path:
    """Hallo's inference YAML with the reference's tiny motion/audio module sizes (the importer's
    defaults are Hallo's real ones), Hallo's clip and motion lengths and, for Hallo2, its
    long-video pixel drop (configs/inference/long.yaml: use_mask, mask_rate 0.25)."""
    import yaml

    configs = reference_configs()
    doc = {
        "unet_additional_kwargs": configs["unet_additional_kwargs"],
        "noise_scheduler_kwargs": configs["scheduler"],
        "data": {"n_sample_frames": clip_frames, "n_motion_frames": motion_frames},
    }
    if variant == "hallo2":
        doc.update(use_mask=True, mask_rate=0.25)
    path.write_text(yaml.safe_dump(doc))
    return path


def make_hallo_weights(folder: Path, variant: str = "hallo") -> Path:
    """A tiny Hallo weights folder, imported by the real importer."""
    from emo_cli.backends.emo.hallo_import import import_hallo

    download = write_hallo_download(folder / "pretrained_models", variant)
    out = folder / f"{variant}-weights"
    import_hallo(
        download, out, variant=variant, hallo_config=write_hallo_config(folder / "inference.yaml", variant)
    )
    return out
