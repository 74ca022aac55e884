"""Hallo / Hallo2 weights through the emo backend: preprocessing, clips, chunk state, SIGKILL + resume.

The weights are a tiny Hallo download built from the shared reference set's state dicts (with
ONNX stand-ins for the face models and the vocal separator), imported by the real importer.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from factories import EMO, PORTRAIT, decoded_frames, emo_env, run_emo, write_wav
from hallo_tiny import REFERENCE, make_hallo_weights

from emo_cli.backends.base import JobInput, decode_state, encode_state
from emo_cli.backends.emo import EmoBackend
from emo_cli.errors import InputError
from emo_cli.media.audio import decode_audio

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "configs.json").is_file(), reason="needs ../shared/hallo-reference"
)
FPS = 25
DEADLINE_S = 300


@pytest.fixture(scope="module")
def hallo_weights(tmp_path_factory) -> Path:
    return make_hallo_weights(tmp_path_factory.mktemp("hallo"), "hallo")


@pytest.fixture(scope="module")
def hallo2_weights(tmp_path_factory) -> Path:
    return make_hallo_weights(tmp_path_factory.mktemp("hallo2"), "hallo2")


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("voice") / "voice.wav", 0.9)  # 23 frames: two clips of 16


def job_input(voice: Path, weights: Path, **options) -> JobInput:
    audio = decode_audio(voice, 16000)
    return JobInput(
        job_id="test", portrait_path=PORTRAIT, audio=audio, sample_rate=16000, fps=FPS,
        num_frames=int(np.ceil(len(audio) / 16000 * FPS)), seed=7, resolution=64,
        options=EmoBackend.resolve_options({"weights": str(weights), "steps": 1, **options}),
    )  # fmt: skip


def render_in_chunks(renderer, counts, state=None, start=0):
    state = state if state is not None else renderer.initial_state()
    frames, states = [], []
    for count in counts:
        out = renderer.render_chunk(start, count, state)
        assert out.frames.shape == (count, 64, 64, 3) and out.frames.dtype == np.uint8
        frames.append(out.frames)
        state = decode_state(encode_state(out.state))  # through the checkpoint's on-disk form
        states.append(state)
        start += count
    return np.concatenate(frames), states


@pytest.mark.slow
def test_hallo_weights_render_clips_of_16_and_resume_from_the_decoded_motion_frames(hallo_weights, voice):
    backend = EmoBackend()
    renderer = backend.start_job(job_input(voice, hallo_weights))
    assert type(renderer).__name__ == "HalloRenderer"
    assert (renderer.clip_frames, renderer.motion_frames) == (16, 2)  # the weights' own
    assert renderer.audio.padded_frames == 32 and renderer.audio.mode == "whole"
    whole, _ = render_in_chunks(renderer, [23])
    assert len({frame.tobytes() for frame in whole}) > 1

    chunked, states = render_in_chunks(renderer, [10, 13])
    assert np.array_equal(chunked, whole)
    # After chunk 0: clip 0 (frames 0-15) rendered, 6 of its frames pending, and its last two
    # decoded frames (float, not the rounded uint8) kept for clip 1.
    assert states[0]["clip"] == 1 and states[0]["pending"].shape[0] == 6
    motion = states[0]["motion"]
    assert (
        motion.shape == (2, 64, 64, 3)
        and motion.dtype == np.float32
        and 0 <= motion.min() <= motion.max() <= 1
    )
    assert np.array_equal(
        np.clip(motion * 255, 0, 255).astype(np.uint8), np.concatenate([states[0]["pending"][-2:]])
    )

    resumed = backend.start_job(job_input(voice, hallo_weights))  # a new process would do this
    rest, _ = render_in_chunks(resumed, [13], state=states[0], start=10)
    assert np.array_equal(rest, whole[10:])

    lips = render_in_chunks(backend.start_job(job_input(voice, hallo_weights, lip_weight=0.0)), [10])[0]
    assert not np.array_equal(lips, whole[:10])  # the region weights reach the audio modules


@pytest.mark.slow
def test_hallo2_weights_drop_motion_pixels_seeded_per_clip(hallo_weights, hallo2_weights, voice):
    renderer = EmoBackend().start_job(job_input(voice, hallo2_weights))
    assert renderer.variant == "hallo2" and renderer.pipeline.backbone.config.motion_patch_drop == 0.25
    whole, _ = render_in_chunks(renderer, [23])
    again, states = render_in_chunks(EmoBackend().start_job(job_input(voice, hallo2_weights)), [10, 13])
    assert np.array_equal(whole, again)  # the drop comes from the clip's seeded generator
    # The same network weights imported as Hallo: only the pixel drop on the motion frames differs.
    hallo = render_in_chunks(EmoBackend().start_job(job_input(voice, hallo_weights)), [10])[0]
    assert not np.array_equal(hallo, whole[:10])


def test_options_that_do_not_fit_the_weights_are_named(hallo_weights, voice):
    from tiny import make_weights

    with pytest.raises(InputError, match="settings.emo.motion_frames is 4, but these Hallo weights"):
        EmoBackend().start_job(job_input(voice, hallo_weights, motion_frames=4))
    with pytest.raises(InputError, match="settings.emo.scheduler: Hallo weights render with their own DDIM"):
        EmoBackend().start_job(job_input(voice, hallo_weights, scheduler="dpmsolver++"))
    emo_weights = make_weights(hallo_weights.parent / "emo")
    with pytest.raises(InputError, match="settings.emo.lip_weight applies to Hallo weights only"):
        EmoBackend().start_job(job_input(voice, emo_weights, lip_weight=0.5))


MANIFEST = """\
version: 1
output_dir: out
defaults:
  backend: emo
  fps: 25
  resolution: 64
  seed: 3
  chunk_frames: 10
  emo: {{weights: {weights}, steps: 1}}
portraits: {{astro: astronaut.jpg}}
audio: {{voice: voice.wav}}
jobs:
  - {{portrait: astro, audio: voice}}
"""


def project(folder: Path, weights: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(PORTRAIT, folder / "astronaut.jpg")
    write_wav(folder / "voice.wav", 1.5)  # 38 frames: three clips of 16, four chunks
    manifest = folder / "hallo.yaml"
    manifest.write_text(MANIFEST.format(weights=weights))
    return manifest


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.slow
def test_emo_render_of_hallo_weights_killed_mid_job_resumes_to_the_same_video(hallo_weights, tmp_path):
    reference = run_emo(
        "render", "--json", str(project(tmp_path / "reference", hallo_weights)), timeout=DEADLINE_S
    )
    assert reference.returncode == 0, reference.stderr
    (done,) = [e for e in events(reference.stdout) if e["event"] == "job_done"]
    expected = decoded_frames(Path(done["output"]))
    assert len(expected) == 38

    manifest = project(tmp_path / "killed", hallo_weights)
    fifo = tmp_path / "pause.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*EMO, "render", "--json", str(manifest)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True, env=emo_env(EMO_TEST_PAUSE_AT="encode:2", EMO_TEST_PAUSE_FIFO=str(fifo)),
    )  # fmt: skip
    try:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        announced, deadline = b"", time.monotonic() + DEADLINE_S
        while not announced.endswith(b"\n"):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the render never reached chunk 2"
            if select.select([reader], [], [], 0.5)[0]:
                announced += os.read(reader, 100)
        os.close(reader)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # mid chunk 2: clip 1 done, its motion frames in chunk 1's state
        proc.wait()
        proc.stderr.close()

    again = run_emo("render", "--json", str(manifest), timeout=DEADLINE_S)
    assert again.returncode == 0, again.stderr
    log = events(again.stdout)
    (started,) = [e for e in log if e["event"] == "job_started"]
    assert started["chunks_reused"] == 2
    assert [e["chunk"] for e in log if e["event"] == "chunk_done"] == [2, 3]
    (done,) = [e for e in log if e["event"] == "job_done"]
    frames = decoded_frames(Path(done["output"]))
    assert len(frames) == 38
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True))


def test_hallo_options_are_checked_by_emo_validate(tmp_path):
    manifest = tmp_path / "m.yaml"
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.3)
    manifest.write_text(
        MANIFEST.replace(
            "{weights: {weights}, steps: 1}", "{weights: w, lip_weight: -1, audio_features: often}"
        )
        .replace("{{", "{")
        .replace("}}", "}")
    )
    result = run_emo("validate", str(manifest), timeout=DEADLINE_S)
    assert result.returncode == 2, result.stdout + result.stderr
    text = result.stdout + result.stderr
    assert "lip_weight" in text and "audio_features" in text


def test_hallo_features_come_from_a_float32_wav2vec_under_half_precision(hallo_weights):
    import torch

    from emo_cli.backends.emo.pipeline import load_model
    from emo_cli.backends.emo.preprocess import hallo_audio_encoder

    full = load_model(hallo_weights)
    assert hallo_audio_encoder(full) is full.audio_encoder
    half = load_model(hallo_weights, "cpu", torch.bfloat16)
    encoder = hallo_audio_encoder(half)
    assert next(half.audio_encoder.parameters()).dtype == torch.bfloat16
    assert next(encoder.parameters()).dtype == torch.float32
    for a, b in zip(encoder.state_dict().values(), full.audio_encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)
