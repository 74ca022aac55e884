"""Hallo preprocessing: ArcFace alignment, SCRFD decoding, identity embedding, masks, vocal separation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx_standins import (
    MAIN_FACE,
    FakeFace,
    write_detector,
    write_face_models,
    write_recognizer,
    write_separator,
)

from emo_cli.backends.emo.identity import (
    ARCFACE_TEMPLATE,
    FaceAnalysis,
    FaceDetector,
    FaceRecognizer,
    align_face,
    nms,
    similarity_transform,
)
from emo_cli.errors import InputError, WeightsError


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]]
    )


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


# -- alignment --------------------------------------------------------------------------------------
def test_similarity_transform_recovers_a_hand_made_one():
    # Landmarks made by mapping the template through the inverse of a known similarity: the
    # estimate must be that similarity exactly.
    truth = similarity(0.5, 30.0, 10.0, -5.0)
    inverse = np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2]
    landmarks = apply(inverse, ARCFACE_TEMPLATE.astype(np.float64))
    np.testing.assert_allclose(similarity_transform(landmarks, ARCFACE_TEMPLATE), truth, atol=1e-5)


def test_similarity_transform_is_the_least_squares_one_for_noisy_points():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(0)
    landmarks = apply(similarity(2.3, -12.0, 40.0, 60.0), ARCFACE_TEMPLATE) + rng.normal(0, 2.0, (5, 2))
    expected = SimilarityTransform.from_estimate(landmarks, ARCFACE_TEMPLATE)  # insightface's estimate_norm
    np.testing.assert_allclose(
        similarity_transform(landmarks, ARCFACE_TEMPLATE), expected.params[:2], atol=1e-5
    )


def test_align_face_puts_the_keypoints_on_the_template():
    # A scaled, rotated face: the crop must show, at each template point, the colour drawn at the
    # matching keypoint.
    matrix = similarity(2.0, 20.0, 30.0, 10.0)
    keypoints = apply(matrix, ARCFACE_TEMPLATE.astype(np.float64))
    image = np.zeros((320, 320, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(keypoints, colours, strict=True):
        image[int(round(y)) - 4 : int(round(y)) + 5, int(round(x)) - 4 : int(round(x)) + 5] = colour
    crop = align_face(image, keypoints)
    assert crop.shape == (112, 112, 3)
    for (x, y), colour in zip(ARCFACE_TEMPLATE, colours, strict=True):
        assert tuple(crop[int(round(y)), int(round(x))]) == colour


# -- detection --------------------------------------------------------------------------------------
def test_nms_keeps_the_best_of_overlapping_boxes():
    dets = np.array([[0, 0, 10, 10, 0.8], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.5]], np.float32)
    assert nms(dets) == [1, 2]


@pytest.fixture
def detector(tmp_path):
    import onnxruntime

    overlapping = FakeFace(stride=16, anchor=MAIN_FACE.anchor + 1, score=0.8, distances=(1.1, 0.5, 1.0, 2.0))
    small = FakeFace(stride=8, anchor=(7 * 8 + 0) * 2, score=0.7, distances=(0.0, 0.5, 1.0, 0.5))
    below = FakeFace(stride=32, anchor=3, score=0.49, distances=(1.0, 1.0, 1.0, 1.0))
    path = write_detector(tmp_path / "det.onnx", [MAIN_FACE, overlapping, small, below])
    return FaceDetector(onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]))


def test_detector_decodes_boxes_and_keypoints_in_image_pixels(detector):
    # The stand-in has a fixed 64x64 input; a 128x96 image is shrunk by 0.5 into its top-left.
    assert detector.input_size == (64, 64)
    faces = detector.detect(np.zeros((96, 128, 3), np.uint8))
    assert [round(f.score, 2) for f in faces] == [0.9, 0.7]  # 0.8 suppressed by NMS, 0.49 below 0.5
    main, small = faces
    # Anchor 12 of stride 16: cell (row 1, col 2), centre (32, 16); distances x16; then / 0.5.
    np.testing.assert_allclose(main.box, [32, 16, 96, 96], atol=1e-4)
    centre = np.array([32.0, 16.0])
    expected_kps = (centre + np.array(MAIN_FACE.keypoints).reshape(5, 2) * 16) / 0.5
    np.testing.assert_allclose(main.keypoints, expected_kps, atol=1e-4)
    # Anchor 112 of stride 8: cell (row 7, col 0), centre (0, 56).
    np.testing.assert_allclose(small.box, [0, 104, 16, 120], atol=1e-4)


# -- identity ---------------------------------------------------------------------------------------
def test_identity_is_the_raw_embedding_of_the_aligned_largest_face(tmp_path):
    models = write_face_models(tmp_path / "models", dim=16)
    analysis = FaceAnalysis(models)
    assert analysis.recognizer.dim == 16 and (analysis.recognizer.mean, analysis.recognizer.std) == (
        127.5,
        127.5,
    )
    rgb = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    embedding, face = analysis.identity(rgb)
    # By hand: align with scikit-image's similarity, normalise, channel means @ weight.
    import cv2
    from skimage.transform import SimilarityTransform

    tform = SimilarityTransform.from_estimate(face.keypoints, ARCFACE_TEMPLATE)
    crop = cv2.warpAffine(rgb, tform.params[:2], (112, 112), borderValue=0.0)
    weight = np.random.default_rng(5).normal(0, 1, (3, 16)).astype(np.float32)
    expected = (((crop.astype(np.float32) - 127.5) / 127.5).mean(axis=(0, 1)) @ weight).astype(np.float32)
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-5)
    assert embedding.dtype == np.float32 and abs(np.linalg.norm(embedding) - 1) > 1e-3  # not normalised


def test_no_face_gives_a_zero_embedding(tmp_path):
    analysis = FaceAnalysis(write_face_models(tmp_path / "models", dim=16, faces=[]))
    embedding, face = analysis.identity(np.full((64, 64, 3), 128, np.uint8))
    assert face is None and embedding.shape == (16,) and not embedding.any()


def test_mxnet_style_recogniser_takes_raw_pixels(tmp_path):
    import onnxruntime

    weight = np.eye(3, dtype=np.float32)
    path = write_recognizer(tmp_path / "r.onnx", weight, mxnet_names=True)
    recognizer = FaceRecognizer(onnxruntime.InferenceSession(str(path)), path)
    assert (recognizer.mean, recognizer.std) == (0.0, 1.0)
    crop = np.full((112, 112, 3), (10, 20, 30), np.uint8)
    np.testing.assert_allclose(recognizer.embed(crop), [10, 20, 30], atol=1e-4)


def test_face_models_folder_without_a_recogniser_is_reported(tmp_path):
    write_detector(tmp_path / "models" / "det.onnx", [MAIN_FACE])
    with pytest.raises(WeightsError, match="no a face recogniser"):
        FaceAnalysis(tmp_path / "models")


# -- masks ------------------------------------------------------------------------------------------
def test_expand_region_grows_about_the_centre_and_stays_inside():
    from emo_cli.backends.emo.regions import expand_region

    assert expand_region((20, 40, 30, 50), 100, 100, 1.2) == (18, 42, 28, 52)
    assert expand_region((0, 20, 0, 20), 100, 100, 2.0) == (0, 40, 0, 40)
    assert expand_region((80, 100, 80, 100), 100, 100, 2.0) == (60, 100, 60, 100)
    # Grown past both edges: Hallo's shift leaves a negative corner; the mask still covers the image.
    assert expand_region((0, 100, 0, 100), 100, 100, 2.0) == (-100, 100, -100, 100)
    from emo_cli.backends.emo.regions import SILHOUETTE, box_mask

    landmarks = np.zeros((478, 2))
    landmarks[SILHOUETTE[0]], landmarks[SILHOUETTE[1]] = (0, 0), (100, 100)
    assert box_mask(landmarks, SILHOUETTE, 100, 100, 2.0).min() == 255


def test_regions_from_landmarks_follow_hallos_construction():
    from emo_cli.backends.emo.regions import LIPS, SILHOUETTE, hallo_regions_from_landmarks

    landmarks = np.zeros((478, 2))
    landmarks[:] = (64, 64)
    rng = np.random.default_rng(0)
    landmarks[SILHOUETTE] = np.column_stack([rng.uniform(34, 94, 36), rng.uniform(24, 104, 36)])
    landmarks[SILHOUETTE[0]] = (34, 24)
    landmarks[SILHOUETTE[1]] = (94, 104)
    landmarks[LIPS] = np.column_stack([rng.uniform(54, 74, 20), rng.uniform(84, 94, 20)])
    landmarks[LIPS[0]] = (54, 84)
    landmarks[LIPS[1]] = (74, 94)
    regions = hallo_regions_from_landmarks(landmarks, 128, 128, size=64)
    # Face box x 34..94, y 24..104 grown 1.2x: x 28..100, y 16..112; at 64 px: x 14..50, y 8..56.
    face = regions.face_region
    assert face.shape == (3, 64, 64) and face.dtype == np.float32
    assert face[:, 10:54, 16:48].min() == 1.0 and face[:, :6].max() == 0.0 and face[:, :, 52:].max() == 0.0
    assert [m.shape for m in regions.full_masks] == [(1, 64), (1, 16), (1, 4), (1, 1)]
    full, face_only, lip = (
        m[0].reshape(8, 8) for m in (regions.full_masks, regions.face_masks, regions.lip_masks)
    )
    # Lip box x 44..84, y 79..99 of 128: row 5, columns 3-4 of 8; the (blurred) lips are brightest
    # there and the face-without-lips mask dips; the background mask is the face's complement.
    assert np.unravel_index(lip.argmax(), lip.shape)[0] == 5
    assert lip[5, 3:5].min() > 0.7 and lip[:3].max() < 0.05
    assert face_only[5, 3:5].max() < face_only[3, 3:5].min()
    np.testing.assert_allclose(full + face_only + lip, 1.0, atol=0.05, rtol=0)


def test_regions_of_a_real_portrait_use_the_bundled_face_mesh():
    from factories import PORTRAIT

    from emo_cli.backends.emo.regions import hallo_regions
    from emo_cli.backends.face import detect_faces
    from emo_cli.media.image import load_portrait

    rgb = load_portrait(PORTRAIT)
    side = min(rgb.shape[:2])
    square = np.ascontiguousarray(rgb[:side, :side])
    regions = hallo_regions(square, 128)
    box = detect_faces(square)[0]
    inside = regions.face_region[0]
    cx, cy = (np.array(box.center) * 128 / side).astype(int)
    assert inside[cy, cx] == 1.0 and 0.05 < inside.mean() < 0.8
    lip = regions.lip_masks[0].reshape(16, 16)  # H/8 for 128 px
    row, col = np.unravel_index(lip.argmax(), lip.shape)
    assert (
        lip.max() > 0.5 and inside[row * 8 + 4, col * 8 + 4] == 1.0 and row * 8 > cy
    )  # the mouth: below centre

    with pytest.raises(InputError, match="no face found by the face mesh"):
        hallo_regions(np.full((128, 128, 3), 200, np.uint8), 128)


# -- vocal separation -------------------------------------------------------------------------------
def voice(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    wave = (
        np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1320 * t) + 0.25 * np.sin(2 * np.pi * 3000 * t)
    )
    return (amplitude * wave / np.abs(wave).max()).astype(np.float32)


def test_separator_runs_mdx_framing_over_segment_joins(tmp_path):
    from emo_cli.backends.emo.separation import COMPENSATE, VocalSeparator

    separator = VocalSeparator(write_separator(tmp_path / "Kim_Vocal_2.onnx", gain=0.5))
    audio = voice(13.0, 0.5)  # > two MDX segments of 5.9 s: the overlap-add joins are inside
    vocals = separator.separate(audio, 16000, block_seconds=4.0)
    assert vocals.shape == audio.shape and vocals.dtype == np.float32
    inner = slice(800, -800)  # the resampler's edges
    np.testing.assert_allclose(vocals[inner], 0.5 * COMPENSATE * audio[inner], atol=4e-3)

    loud = separator.separate(voice(2.0, 1.0), 16000)  # peak 1.0: the mix is scaled to 0.9 first
    np.testing.assert_allclose(loud[800:-800], 0.9 * 0.5 * COMPENSATE * voice(2.0, 1.0)[800:-800], atol=8e-3)


def test_separator_is_optional_in_a_weights_folder(tmp_path):
    from emo_cli.backends.emo.separation import find_separator

    assert find_separator(tmp_path) is None
    path = write_separator(tmp_path / "audio_separator" / "Kim_Vocal_2.onnx")
    assert find_separator(tmp_path) == path


def test_without_the_separator_the_audio_is_used_as_is_and_a_line_says_so(tmp_path, caplog):
    import logging

    from emo_cli.backends.emo.preprocess import prepare_audio

    audio = voice(0.5, 0.3)
    with caplog.at_level(logging.INFO, logger="emo_cli.backends.emo.preprocess"):
        out = prepare_audio(audio, 16000, tmp_path)
    assert np.array_equal(out, audio)
    assert "vocal separation skipped" in caplog.text and "Kim_Vocal_2.onnx" in caplog.text
    write_separator(tmp_path / "audio_separator" / "Kim_Vocal_2.onnx", gain=0.5)
    separated = prepare_audio(audio, 16000, tmp_path)
    assert np.abs(separated[800:-800]).max() < 0.6 * np.abs(audio).max()


def reference_demix(mix: np.ndarray, session) -> np.ndarray:
    """python-audio-separator's MDX demix as its code reads (whole track in memory), for (2, n)
    audio at 44.1 kHz: pad, 25%-overlapping Hann-weighted segments, trim, compensate."""
    import torch

    n_fft, hop, dim_f, trim = 7680, 1024, 3072, 3840
    chunk = hop * 255
    gen = chunk - 2 * trim
    pad = gen + trim - mix.shape[-1] % gen
    mixture = np.concatenate([np.zeros((2, trim), np.float32), mix, np.zeros((2, pad), np.float32)], 1)
    step = int(0.75 * chunk)
    result = np.zeros((1, 2, mixture.shape[-1]), np.float32)
    divider = np.zeros((1, 2, mixture.shape[-1]), np.float32)
    window_fft = torch.hann_window(n_fft, periodic=True)
    for i in range(0, mixture.shape[-1], step):
        end = min(i + chunk, mixture.shape[-1])
        window = np.tile(np.hanning(end - i)[None, None], (1, 2, 1))
        part = np.concatenate([mixture[:, i:end], np.zeros((2, i + chunk - end), np.float32)], -1)
        x = torch.tensor(part[None])
        spec = torch.view_as_real(
            torch.stft(x.reshape(-1, chunk), n_fft, hop, window=window_fft, center=True, return_complex=True)
        )
        spec = spec.permute(0, 3, 1, 2).reshape(1, 2, 2, n_fft // 2 + 1, -1).reshape(1, 4, n_fft // 2 + 1, -1)
        spec = spec[:, :, :dim_f].clone()
        spec[:, :, :3] *= 0
        pred = torch.tensor(session.run(None, {"input": spec.numpy()})[0])
        full = torch.cat([pred, torch.zeros(1, 4, n_fft // 2 + 1 - dim_f, pred.shape[-1])], -2)
        full = full.reshape(1, 2, 2, n_fft // 2 + 1, -1).reshape(-1, 2, n_fft // 2 + 1, full.shape[-1])
        full = full.permute(0, 2, 3, 1)
        wave = torch.istft(full[..., 0] + full[..., 1] * 1.0j, n_fft, hop, window=window_fft, center=True)
        tar = wave.reshape(1, 2, -1).numpy()
        tar[..., : end - i] *= window
        divider[..., i:end] += window
        result[..., i:end] += tar[..., : end - i]
    with np.errstate(divide="ignore", invalid="ignore"):
        waves = (result / divider)[:, :, trim:-trim]
    return np.concatenate(waves, axis=-1)[:, : mix.shape[-1]] * 1.009


def test_streamed_separation_equals_the_whole_track_mdx_demix(tmp_path):
    import onnxruntime

    from emo_cli.backends.emo.separation import VocalSeparator, _blocks, _resampled

    path = write_separator(tmp_path / "Kim_Vocal_2.onnx", gain=2.0, squash=True)
    audio = voice(13.0, 0.5) + np.random.default_rng(0).normal(0, 0.05, 13 * 16000).astype(np.float32)
    ours = VocalSeparator(path).separate(audio, 16000, block_seconds=3.0)

    mix = np.concatenate(list(_resampled(_blocks(audio, 16000), 16000, 44100)))
    stem = reference_demix(np.stack([mix, mix]).astype(np.float32), onnxruntime.InferenceSession(str(path)))
    expected = np.concatenate(list(_resampled(_blocks(stem.mean(axis=0), 44100), 44100, 16000)))[: len(audio)]
    assert np.abs(expected).max() > 0.05
    np.testing.assert_allclose(ours, expected, atol=2e-5)
