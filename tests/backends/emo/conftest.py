"""Fixtures for the EMO backend: one tiny weights folder per session, fresh models per test."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def emo_weights(tmp_path_factory):
    """A tiny EMO weights folder assembled by `init_weights` from tiny public-class components."""
    from tiny import make_weights

    return make_weights(tmp_path_factory.mktemp("emo"))


@pytest.fixture
def pipeline(emo_weights):
    """A freshly loaded tiny pipeline whose zero-initialised EMO layers were given small random
    weights, as training would: otherwise the audio, speed and face inputs have no effect yet."""
    from tiny import activate

    from emo_cli.backends.emo.pipeline import EmoPipeline, load_model

    model = load_model(emo_weights)
    activate(model)
    return EmoPipeline(model)


@pytest.fixture
def clip_inputs(pipeline):
    """Inputs of one clip: keyword arguments of `EmoPipeline.generate_clip` (except the generator)."""
    from tiny import audio_features, random_image

    ref = pipeline.encode_reference(random_image(0))
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[12:52, 16:48] = 1
    return {
        "reference_latent": ref,
        "motion_latents": pipeline.first_motion(ref, pipeline.motion_frames),
        "audio_features": audio_features(pipeline, seed=0),
        "face_features": pipeline.face_features(mask),
        "speed": 0.04,
        "steps": 2,
    }
