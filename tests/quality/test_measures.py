"""The measures as pure functions, on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from factories import SPEECH

from emo_cli.media.audio import decode_audio
from emo_cli.quality.measures import (
    FACE_OVAL,
    STABLE,
    FaceGeometry,
    apply,
    blinks,
    colour_means,
    frame_loudness,
    landmark_jitter,
    lip_sync,
    mouth_at_rest,
    similarity_fit,
    ssim,
)
from emo_cli.quality.vad import frame_speech, model_path


def test_lip_sync_finds_the_lag_and_its_sign():
    rng = np.random.default_rng(0)
    loudness = np.convolve(rng.random(300), np.ones(5) / 5, mode="same")
    late = np.roll(loudness, 3) * 0.05  # the mouth opens 3 frames after the sound
    sync = lip_sync(late, loudness, max_lag=8)
    assert sync.lag == 3 and sync.correlation > 0.95
    early = lip_sync(np.roll(loudness, -5) * 0.05, loudness, max_lag=8)
    assert early.lag == -5
    assert lip_sync(late, loudness, max_lag=2).lag != 3  # outside the search: not found


def test_a_still_mouth_correlates_with_nothing():
    sync = lip_sync(np.full(100, 0.01), np.linspace(0, 1, 100), max_lag=4)
    assert sync.correlation == 0.0 and sync.mouth_range == 0.0


def test_mouth_at_rest_ignores_frames_next_to_speech():
    speech = np.array([1] * 10 + [0] * 20 + [1] * 10, bool)
    mouth = np.where(speech, 0.08, 0.0)
    mouth[10:13] = 0.08  # still closing just after the word: within the margin
    rest = mouth_at_rest(mouth, speech, rest=0.0, tolerance=0.01, margin=3)
    assert rest.silent_frames == 14 and rest.closed_fraction == 1.0
    mouth[20] = 0.05  # open in the middle of the silence
    assert mouth_at_rest(mouth, speech, 0.0, 0.01, 3).closed_fraction == pytest.approx(13 / 14, abs=1e-4)
    assert mouth_at_rest(mouth, np.ones(40, bool), 0.0, 0.01, 3).closed_fraction is None


def test_jitter_does_not_count_head_motion():
    rng = np.random.default_rng(1)
    shape = rng.random((len(STABLE), 2)) * 100
    frames = []
    for t in range(50):
        angle, scale, shift = 0.02 * np.sin(t / 5), 1 + 0.05 * np.sin(t / 7), np.array([3.0 * t, np.cos(t)])
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        frames.append(shape @ rot.T + shift)
    assert landmark_jitter(frames) < 1e-6
    noisy = [f + rng.normal(0, 1.0, f.shape) for f in frames]
    assert 0.8 < landmark_jitter(noisy) < 2.5  # about the noise's mean step (sqrt(2) x 1.25 px)


def test_similarity_fit_recovers_a_transform():
    src = np.random.default_rng(2).random((10, 2)) * 50
    m = np.array([[1.2, -0.3, 5.0], [0.3, 1.2, -7.0]])
    assert np.allclose(similarity_fit(src, apply(m, src)), m)


def test_blinks_are_counted_per_minute():
    eyes = np.full(25 * 60, 0.05)
    for start in (100, 600, 1200):
        eyes[start : start + 4] = 0.02
    found = blinks(eyes, fps=25)
    assert found.count == 3 and found.per_minute == 3.0


def test_loudness_is_zero_in_silence_and_one_when_loud():
    rate, fps = 16000, 25
    audio = np.concatenate([np.zeros(rate), 0.5 * np.sin(np.arange(rate) / 5.0)]).astype(np.float32)
    loud = frame_loudness(audio, rate, fps, 50)
    assert loud[:25].max() == 0.0 and loud[25:].min() == pytest.approx(1.0, abs=0.01)


def test_colour_means_measure_delta_e_of_face_and_background():
    frame = np.full((100, 100, 3), 120, np.uint8)
    oval = np.array([[50 + 20 * np.cos(a), 50 + 25 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, len(FACE_OVAL))])
    geometry = FaceGeometry(0.0, 0.03, 50.0, np.zeros((len(STABLE), 2)), oval, 50.0)
    face, background = colour_means(frame, geometry)
    assert np.allclose(face, background, atol=0.5)
    warmer = frame.copy()
    warmer[..., 0] += 20
    face2, background2 = colour_means(warmer, geometry)
    assert np.linalg.norm(face2 - face) > 5 and np.linalg.norm(background2 - background) > 5


def test_ssim_is_scikit_image_s_gaussian_ssim():
    import cv2
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = cv2.GaussianBlur(rng.random((96, 96)).astype(np.float32) * 255, (5, 5), 1.0)
    for b in (a, a + rng.normal(0, 10, a.shape).astype(np.float32), cv2.GaussianBlur(a, (7, 7), 2.0), 255 - a):
        expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=255)  # fmt: skip
        assert ssim(a, b) == pytest.approx(expected, abs=2e-3)
    assert ssim(a, a) == pytest.approx(1.0)


def test_the_bundled_vad_tells_speech_from_silence():
    assert model_path().name == "silero_vad.onnx"
    voice = decode_audio(SPEECH, 16000)
    audio = np.concatenate([np.zeros(16000, np.float32), voice])
    speech = frame_speech(audio, fps=25, num_frames=int(len(audio) / 16000 * 25))
    assert not speech[:20].any()  # the second of silence (its last frames may see the onset)
    assert speech[25:].mean() > 0.6
