"""The EMO networks at toy size: properties of one clip, not numbers copied from a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import audio_features, random_image

from emo_cli.backends.emo.modules import Conditions
from emo_cli.backends.emo.pipeline import EmoPipeline, load_model
from emo_cli.backends.emo.weights import write_index


def clip(pipeline, inputs, seed=0, **changes):
    return pipeline.generate_clip(**{**inputs, **changes}, generator=torch.Generator().manual_seed(seed))


def test_clip_shape_and_determinism(pipeline, clip_inputs):
    a = clip(pipeline, clip_inputs)
    assert a.shape == (12, 4, 8, 8)
    assert torch.equal(a, clip(pipeline, clip_inputs))
    assert not torch.equal(a, clip(pipeline, clip_inputs, seed=1))
    frames = pipeline.decode(a)
    assert frames.shape == (12, 64, 64, 3) and frames.dtype.name == "uint8"


def test_audio_changes_the_clip_and_silenced_audio_attention_removes_it(pipeline, clip_inputs):
    other = audio_features(pipeline, seed=1)
    assert not torch.allclose(clip(pipeline, clip_inputs), clip(pipeline, clip_inputs, audio_features=other))
    with torch.no_grad():
        for layer in pipeline.backbone.audio_attention.values():
            layer.attn.to_out[0].weight.zero_()
            layer.attn.to_out[0].bias.zero_()
    assert torch.equal(clip(pipeline, clip_inputs), clip(pipeline, clip_inputs, audio_features=other))


def test_reference_image_changes_the_clip(pipeline, clip_inputs):
    other = pipeline.encode_reference(random_image(1))
    assert not torch.allclose(
        clip(pipeline, clip_inputs), clip(pipeline, clip_inputs, reference_latent=other)
    )


def test_motion_frames_and_head_speed_change_the_clip(pipeline, clip_inputs):
    first = clip(pipeline, clip_inputs)
    carried = clip(pipeline, clip_inputs, motion_latents=first[-pipeline.motion_frames :])
    assert not torch.allclose(first, carried)
    assert not torch.allclose(first, clip(pipeline, clip_inputs, speed=0.0))


def test_guidance_and_dpm_solver(pipeline, clip_inputs):
    guided = clip(pipeline, clip_inputs, guidance_scale=3.5)
    assert not torch.allclose(guided, clip(pipeline, clip_inputs, guidance_scale=1.0))
    dpm = clip(pipeline, clip_inputs, scheduler="dpmsolver++")
    assert dpm.shape == guided.shape and not torch.allclose(dpm, guided)


def test_batched_cfg_and_reference_once_per_clip_equal_the_naive_loop(pipeline, clip_inputs):
    fast = clip(pipeline, clip_inputs, guidance_scale=3.5)
    naive = clip(pipeline, clip_inputs, guidance_scale=3.5, naive=True)
    assert torch.allclose(fast, naive, atol=1e-4)


def test_unconditional_rows_ignore_reference_and_audio(pipeline, clip_inputs):
    """The rows CFG marks unconditional see neither the reference nor the audio (motion stays)."""
    n = pipeline.motion_frames
    sample = torch.randn((1, 4, 12, 8, 8), generator=torch.Generator().manual_seed(0))

    def predict(reference_latent, features, keep):
        reference, motion = pipeline.reference_pass(reference_latent, clip_inputs["motion_latents"])
        conditions = Conditions(reference=reference, motion=motion, audio=pipeline.audio_tokens(features),
                                speed=pipeline.speed_tokens(0.04, n + 12), keep=torch.tensor([keep]), frames=12)  # fmt: skip
        with torch.no_grad():
            return pipeline.backbone(sample, 500, conditions)

    other_ref = pipeline.encode_reference(random_image(2))
    other_audio = audio_features(pipeline, seed=3)
    base = clip_inputs["reference_latent"], clip_inputs["audio_features"]
    assert torch.allclose(predict(*base, False), predict(other_ref, other_audio, False), atol=1e-5)
    assert not torch.allclose(predict(*base, True), predict(other_ref, base[1], True), atol=1e-3)
    assert not torch.allclose(predict(*base, True), predict(base[0], other_audio, True), atol=1e-3)


def test_assembled_model_starts_as_its_components(emo_weights, clip_inputs):
    """Zero-initialised EMO layers: before training, audio and face do not change anything."""
    pipeline = EmoPipeline(load_model(emo_weights))
    mask = torch.zeros((64, 64))
    mask[8:40, 8:40] = 1
    inputs = {**clip_inputs, "face_features": pipeline.face_features(mask.numpy())}
    assert not inputs["face_features"].any()
    a = clip(pipeline, inputs)
    b = clip(pipeline, inputs, audio_features=audio_features(pipeline, seed=5), speed=0.0,
             face_features=pipeline.face_features(1 - mask.numpy()))  # fmt: skip
    assert torch.equal(a, b)


def test_save_and_load_round_trip_gives_identical_clips(pipeline, clip_inputs, emo_weights, tmp_path):
    for name, part in (("reference_unet", pipeline.model.reference_unet), ("denoising_unet", pipeline.backbone),
                       ("face_locator", pipeline.model.face_locator), ("audio_proj", pipeline.model.audio_proj),
                       ("speed_encoder", pipeline.model.speed_encoder), ("vae", pipeline.model.vae),
                       ("audio_encoder", pipeline.model.audio_encoder)):  # fmt: skip
        part.save_pretrained(tmp_path / name)
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_bytes(
        (emo_weights / "scheduler" / "scheduler_config.json").read_bytes()
    )
    write_index(tmp_path, sources={})
    loaded = EmoPipeline(load_model(tmp_path))
    assert torch.equal(clip(pipeline, clip_inputs), clip(loaded, clip_inputs))


def test_family_choices_are_config_fields(emo_weights):
    """Where Hallo differs from the paper (face locator after conv_in, the reference as the first
    clip's motion frames), the choice is a config value of the saved module, not code."""
    from emo_cli.backends.emo.modules import EmoBackbone

    folder = emo_weights / "denoising_unet"
    backbone = EmoBackbone.from_pretrained(
        folder, face_locator_target="conv_in", first_clip_motion="reference"
    )
    assert backbone.config.face_locator_target == "conv_in"
    sample = torch.randn((1, 4, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    face = torch.randn((1, backbone.unet.config.block_out_channels[0], 8, 8), generator=torch.Generator())
    with torch.no_grad():
        plain = backbone(sample, 10, Conditions(frames=3))
        located = backbone(sample, 10, Conditions(frames=3), face_features=face)
    assert not torch.allclose(plain, located)

    pipeline = EmoPipeline(load_model(emo_weights))
    pipeline.backbone.register_to_config(first_clip_motion="reference")
    ref = pipeline.encode_reference(random_image(0))
    assert torch.equal(pipeline.first_motion(ref, 2), ref.expand(2, -1, -1, -1))

    with pytest.raises(ValueError, match="audio_attention_regions"):
        EmoBackbone.from_pretrained(folder, audio_attention_regions=2)


def test_audio_features_have_one_row_per_video_frame(emo_weights):
    from emo_cli.backends.emo.audio import AudioFeatures

    encoder = load_model(emo_weights).audio_encoder
    audio = np.random.default_rng(0).normal(0, 0.2, 14720).astype(np.float32)  # 0.92 s: 23 frames at 25 fps
    features = AudioFeatures(encoder, audio, sample_rate=16000, fps=25, num_frames=23, layers=2)
    assert features.frames(0, 23).shape == (23, 2, 32)
    window = features.window(12, 12, 2)  # the last clip runs past the audio's end
    assert window.shape == (12, 5, 2, 32)
    assert torch.equal(window[-1, 1], window[-1, 4])  # frames 22..25 of 23: the last one repeated
    assert not torch.equal(window[0, 0], window[0, 4])
    short = AudioFeatures(encoder, audio[:100], sample_rate=16000, fps=60, num_frames=1, layers=2)
    assert short.window(0, 12, 2).shape == (12, 5, 2, 32)
