"""Hallo's audio grid: padding, frame count, window clamping, and the windowed mode for long audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emo_cli.backends.emo.audio import HalloAudio, hallo_grid, hallo_normalize, window_indices


@pytest.fixture(scope="module")
def encoder():
    """A tiny wav2vec 2.0 with a group-norm CNN like wav2vec2-base (stride 20, receptive field 25)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, num_feat_extract_layers=2, feat_extract_norm="group",
    )  # fmt: skip
    return Wav2Vec2Model(config).eval()


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * 16000))) / 16000
    return (
        0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.05, t.size)
    ).astype(np.float32)


def hallo_reference(encoder, audio: np.ndarray, clip: int) -> torch.Tensor:
    """Hallo's AudioProcessor.preprocess + Wav2VecModel.forward, step by step (no hooks)."""
    x = hallo_normalize(audio)
    seq_len = int(np.ceil(len(x) / 16000 * 25))
    x = torch.from_numpy(x)
    if seq_len % clip:
        x = F.pad(x, (0, (clip - seq_len % clip) * (16000 // 25)))
        seq_len += clip - seq_len % clip
    with torch.no_grad():
        feats = encoder.feature_extractor(x[None]).transpose(1, 2)
        feats = F.interpolate(
            feats.transpose(1, 2), size=seq_len, align_corners=True, mode="linear"
        ).transpose(1, 2)
        hidden, _ = encoder.feature_projection(feats)
        hidden = encoder.encoder.layer_norm(hidden + encoder.encoder.pos_conv_embed(hidden))
        states = []  # hidden_states[1:]: the output of every transformer layer
        for layer in encoder.encoder.layers:
            hidden = layer(hidden)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            states.append(hidden)
    return torch.stack(states, dim=1)[0].permute(1, 0, 2)  # "b s d -> s b d"


def test_grid_pads_to_whole_clips_on_the_raw_length():
    # 0.9 s: ceil(22.5) = 23 frames -> 32 (two clips of 16), 9 frames * 640 samples of padding.
    assert hallo_grid(14400, 16000, 25, 16) == (23, 32, 9 * 640)
    # The padding counts from the raw length, not from a frame boundary: 14401 samples pad the same.
    assert hallo_grid(14401, 16000, 25, 16) == (23, 32, 9 * 640)
    assert hallo_grid(16 * 640, 16000, 25, 16) == (16, 16, 0)
    assert hallo_grid(16 * 640 + 1, 16000, 25, 16) == (17, 32, 15 * 640)


def test_window_indices_clamp_at_both_ends():
    assert window_indices(0, 2, 2, 10).tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3]]
    assert window_indices(9, 2, 2, 10).tolist() == [[7, 8, 9, 10, 10], [8, 9, 10, 10, 10]]


def test_whole_file_grid_matches_hallo(encoder):
    audio = speech(0.9)
    features = HalloAudio(encoder, audio, sample_rate=16000, fps=25, clip_frames=16, mode="whole")
    expected = hallo_reference(encoder, audio, 16)
    assert (features.frames, features.padded_frames) == (23, 32)
    assert features.frames_range(0, 32).shape == (32, 3, 32)
    torch.testing.assert_close(features.frames_range(0, 32), expected, atol=1e-5, rtol=1e-5)
    window = features.window(16, 16)
    assert window.shape == (16, 5, 3, 32)
    # Frame 31 (the padded end) is the last index: its window repeats it.
    assert torch.equal(window[-1, 2], expected[31]) and torch.equal(window[-1, 4], expected[31])
    torch.testing.assert_close(window[0], expected[14:19], atol=1e-5, rtol=1e-5)


def test_windowed_mode_is_hallos_grid_when_a_window_spans_the_file(encoder):
    audio = speech(1.5)
    whole = HalloAudio(encoder, audio, sample_rate=16000, fps=25, clip_frames=16, mode="whole")
    wide = HalloAudio(encoder, audio, sample_rate=16000, fps=25, clip_frames=16, mode="windowed",
                      block_frames=16, context_frames=64)  # fmt: skip
    torch.testing.assert_close(wide.frames_range(0, 48), whole.frames_range(0, 48), atol=1e-5, rtol=1e-5)


def test_windowed_mode_is_local_and_order_independent(encoder):
    audio = speech(3.0)
    whole = HalloAudio(encoder, audio, sample_rate=16000, fps=25, clip_frames=16, mode="whole")
    narrow = HalloAudio(encoder, audio, sample_rate=16000, fps=25, clip_frames=16, mode="windowed",
                        block_frames=16, context_frames=8)  # fmt: skip
    a = narrow.window(32, 16)
    later = narrow.window(64, 16)
    fresh = HalloAudio(encoder, audio, sample_rate=16000, fps=25, clip_frames=16, mode="windowed",
                       block_frames=16, context_frames=8)  # fmt: skip
    assert torch.equal(fresh.window(64, 16), later)  # a resumed render reads the same features
    assert torch.equal(narrow.window(32, 16), a)
    diff = (a - whole.window(32, 16)).abs().max().item()
    assert 0 < diff < 10  # local statistics and attention differ; the grid does not shift


def test_auto_mode_switches_to_windowed_for_long_audio(encoder, monkeypatch):
    import emo_cli.backends.emo.audio as audio_module

    monkeypatch.setattr(audio_module, "WHOLE_FILE_MAX_SECONDS", 1.0)
    assert HalloAudio(encoder, speech(0.9), sample_rate=16000, fps=25, clip_frames=16).mode == "whole"
    assert HalloAudio(encoder, speech(1.2), sample_rate=16000, fps=25, clip_frames=16).mode == "windowed"
