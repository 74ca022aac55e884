"""The module behaviours training needs: checkpointing, speed attention along frames, calibrated
speed, a ReferenceNet pass with gradients, independent keep-masks. Tiny model, CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import activate, audio_features, random_image

from emo_cli.backends.emo.modules import Conditions, EmoBackbone, SpeedEncoder
from emo_cli.backends.emo.pipeline import EmoPipeline, load_model

FRAMES = 4


@pytest.fixture
def trainable(emo_weights):
    """A tiny pipeline with the paper's speed attention and per-frame norm, EMO layers activated."""
    model = load_model(emo_weights)
    model.backbone = EmoBackbone.from_pretrained(emo_weights / "denoising_unet", speed_attention_mode="frame_axis",
                                                 temporal_norm="per_frame")  # fmt: skip
    activate(model)
    return EmoPipeline(model)


def inputs(pipeline, ref_seed=0, audio_seed=0, speeds=None):
    n = pipeline.motion_frames
    reference = pipeline.encode_reference(random_image(ref_seed))
    motion = pipeline.encode_reference(random_image(7)).expand(n, -1, -1, -1)
    ref_bank, motion_bank = pipeline.reference_pass(reference, motion)
    speeds = torch.linspace(0.0, 0.08, n + FRAMES)[None] if speeds is None else speeds
    return Conditions(reference=ref_bank, motion=motion_bank, frames=FRAMES,
                      audio=pipeline.audio_tokens(audio_features(pipeline, audio_seed, frames=FRAMES)),
                      speed=pipeline.model.speed_encoder(speeds))  # fmt: skip


def sample():
    return torch.randn((1, 4, FRAMES, 8, 8), generator=torch.Generator().manual_seed(0))


def test_gradient_checkpointing_gives_the_gradients_of_a_plain_backward(trainable):
    backbone = trainable.backbone
    backbone.requires_grad_(True).train()
    cond = inputs(trainable)
    grads = []
    for checkpointing in (False, True):
        backbone.zero_grad(set_to_none=True)
        if checkpointing:
            backbone.unet.enable_gradient_checkpointing()
        backbone(sample(), 500, cond).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in backbone.named_parameters() if p.grad is not None})
    assert backbone.unet.is_gradient_checkpointing
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 100
    for key, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][key], atol=1e-6), key
    backbone.release_conditions()
    assert backbone.conditions.audio is None and not backbone.conditions.reference


def test_inference_still_releases_the_conditions(trainable):
    with torch.no_grad():
        trainable.backbone(sample(), 500, inputs(trainable))
    assert trainable.backbone.conditions.speed is None and not trainable.backbone.conditions.motion


@pytest.mark.parametrize(("mode", "matters"), [("frame_axis", True), ("per_frame", False)])
def test_speed_query_key_weights_matter_only_along_the_frame_axis(trainable, mode, matters):
    backbone = trainable.backbone
    backbone.register_to_config(speed_attention_mode=mode)
    cond = inputs(trainable)
    with torch.no_grad():
        before = backbone(sample(), 500, cond)
        torch.manual_seed(1)
        for layer in backbone.speed_attention.values():
            layer.attn.to_q.weight.normal_(0, 1.0)
            layer.attn.to_k.weight.normal_(0, 1.0)
        after = backbone(sample(), 500, cond)
    assert (before - after).abs().max().item() > 1e-4 if matters else torch.equal(before, after)


def test_speed_along_frames_reads_other_frames_speeds(trainable):
    """A speed change at the last frame alone moves the prediction of the first frame."""
    n = trainable.motion_frames
    speeds = torch.full((1, n + FRAMES), 0.02)
    changed = speeds.clone()
    changed[0, -1] = 0.08
    with torch.no_grad():
        a = trainable.backbone(sample(), 500, inputs(trainable, speeds=speeds))
        b = trainable.backbone(sample(), 500, inputs(trainable, speeds=changed))
    assert (a[:, :, 0] - b[:, :, 0]).abs().max().item() > 1e-6


def test_calibrated_speed_buckets_map_head_motion_to_a_quantile(tmp_path):
    from emo_cli.training.headpose import fit_speed_table

    speeds = np.random.default_rng(0).gamma(2.0, 0.3, 5000)  # degrees per frame
    table = fit_speed_table(speeds, buckets=9)
    encoder = SpeedEncoder(hidden_dim=8, context_dim=8)
    assert encoder.speed_for_head_motion(0.5) == pytest.approx(0.04)  # uncalibrated: rad/frame guess
    encoder.calibrate(table)
    assert encoder.config.unit == "degrees/frame"
    assert encoder.speed_for_head_motion(0.5) == pytest.approx(np.median(speeds), rel=0.02)
    assert encoder.speed_for_head_motion(0.9) == pytest.approx(np.quantile(speeds, 0.9), rel=0.02)
    encoder.save_pretrained(tmp_path)
    loaded = SpeedEncoder.from_pretrained(tmp_path)
    assert torch.equal(loaded.bucket_centers, torch.tensor(table["buckets"]["centers"], dtype=torch.float32))
    assert loaded.speed_for_head_motion(0.5) == encoder.speed_for_head_motion(0.5)
    with pytest.raises(ValueError, match="speed buckets"):
        SpeedEncoder(hidden_dim=8, context_dim=8, centers=[0.0, 1.0], radii=[1.0, 1.0]).calibrate(table)


def test_reference_pass_with_gradients_reaches_the_reference_net(trainable):
    unet = trainable.model.reference_unet
    unet.requires_grad_(True).train()
    unet.enable_gradient_checkpointing()
    latents = torch.cat([trainable.encode_reference(random_image(0))] * 3)
    context = trainable.backbone.empty_context(3, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        tokens, _ = trainable.recorder.record(latents, context)
    assert not any(t.requires_grad for t in tokens.values())
    tokens, features = trainable.recorder.record(latents, context, grad=True)
    loss = sum(t.square().mean() for t in tokens.values()) + sum(f.square().mean() for f in features.values())
    loss.backward()
    assert unet.conv_in.weight.grad is not None and unet.conv_in.weight.grad.abs().sum() > 0


def test_reference_and_audio_keep_masks_are_independent(trainable):
    def predict(ref_seed, audio_seed, keep_reference, keep_audio):
        cond = inputs(trainable, ref_seed=ref_seed, audio_seed=audio_seed)
        cond.keep_reference, cond.keep_audio = torch.tensor([keep_reference]), torch.tensor([keep_audio])
        with torch.no_grad():
            return trainable.backbone(sample(), 500, cond)

    def same(a, b):
        return torch.allclose(a, b, atol=1e-6)

    # reference dropped, audio kept: the reference image no longer matters, the audio does
    assert same(predict(0, 0, False, True), predict(3, 0, False, True))
    assert not same(predict(0, 0, False, True), predict(0, 5, False, True))
    # audio dropped, reference kept: the other way round
    assert same(predict(0, 0, True, False), predict(0, 5, True, False))
    assert not same(predict(0, 0, True, False), predict(3, 0, True, False))
    # the same semantics as the joint `keep` of inference CFG
    joint = inputs(trainable)
    joint.keep = torch.tensor([False])
    with torch.no_grad():
        dropped = trainable.backbone(sample(), 500, joint)
    assert torch.equal(dropped, predict(0, 0, False, False))


def test_banks_are_per_sample_a_batch_of_two_equals_each_sample_alone(trainable):
    """Batch > 1 (training): each sample reads its own reference, motion frames, audio and speed."""
    single = [inputs(trainable, ref_seed=s, audio_seed=s, speeds=torch.full((1, trainable.motion_frames + FRAMES),
                                                                           0.02 * (s + 1))) for s in (0, 3)]  # fmt: skip
    x = torch.randn((2, 4, FRAMES, 8, 8), generator=torch.Generator().manual_seed(0))
    joined = Conditions(
        reference={k: torch.cat([c.reference[k] for c in single]) for k in single[0].reference},
        motion={k: torch.stack([c.motion[k] for c in single]) for k in single[0].motion},
        audio=torch.cat([c.audio for c in single]), speed=torch.cat([c.speed for c in single]), frames=FRAMES,
    )  # fmt: skip
    with torch.no_grad():
        both = trainable.backbone(x, 500, joined)
        alone = [trainable.backbone(x[i : i + 1], 500, single[i]) for i in range(2)]
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)
    for i in range(2):
        assert torch.allclose(both[i : i + 1], alone[i], atol=1e-5)
