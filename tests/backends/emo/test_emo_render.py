"""The emo backend inside the render pipeline: chunks, state, resume, kill, weights errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factories import (
    DRIVER,
    PORTRAIT,
    decoded_frames,
    driver_env,
    kill_at,
    make_job,
    make_plan,
    write_wav,
)

from emo_cli.backends.base import JobInput, decode_state, encode_state
from emo_cli.backends.emo import EmoBackend
from emo_cli.errors import BackendError, InputError, WeightsError
from emo_cli.execution import render
from emo_cli.execution.journal import Journal
from emo_cli.media.audio import decode_audio

FPS = 25


def emo_options(weights: Path, **extra) -> dict:
    return {"weights": str(weights), "steps": 2, **extra}


def job_input(voice: Path, weights: Path, seconds: float, portrait: Path = PORTRAIT, **options) -> JobInput:
    audio = decode_audio(voice, 16000)
    return JobInput(
        job_id="test", portrait_path=portrait, audio=audio, sample_rate=16000, fps=FPS,
        num_frames=int(np.ceil(seconds * FPS)), seed=7, resolution=64,
        options=EmoBackend.resolve_options(emo_options(weights, **options)),
    )  # fmt: skip


def render_in_chunks(renderer, counts, state=None, start=0):
    """Render chunk after chunk, passing each state through its on-disk encoding like the loop does."""
    state = state if state is not None else renderer.initial_state()
    frames, states = [], []
    for count in counts:
        out = renderer.render_chunk(start, count, state)
        assert out.frames.shape == (count, 64, 64, 3)
        frames.append(out.frames)
        state = decode_state(encode_state(out.state))
        states.append(state)
        start += count
    return np.concatenate(frames), states


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("voice") / "voice.wav", 0.9)  # 23 frames: not a multiple of 12


def test_chunks_that_cut_clips_and_a_resumed_job_equal_one_uninterrupted_chunk(emo_weights, voice):
    backend = EmoBackend()
    renderer = backend.start_job(job_input(voice, emo_weights, 0.9))
    whole, _ = render_in_chunks(renderer, [23])
    assert whole.shape == (23, 64, 64, 3)
    assert len({frame.tobytes() for frame in whole}) > 1

    chunked, states = render_in_chunks(renderer, [5, 5, 5, 8])
    assert np.array_equal(chunked, whole)
    assert [s["clip"] for s in states] == [1, 1, 2, 2]  # clip 1 starts inside chunk 2 (frames 10-14)
    assert states[1]["pending"].shape[0] == 2 and states[1]["motion"].shape == (4, 4, 8, 8)

    # A new process would call start_job again and continue from the saved state.
    resumed = backend.start_job(job_input(voice, emo_weights, 0.9))
    rest, _ = render_in_chunks(resumed, [5, 8], state=states[1], start=10)
    assert np.array_equal(rest, whole[10:])


def test_same_inputs_render_the_same_and_settings_change_it(emo_weights, voice):
    backend = EmoBackend()
    base = render_in_chunks(backend.start_job(job_input(voice, emo_weights, 0.4)), [10])[0]
    again = render_in_chunks(backend.start_job(job_input(voice, emo_weights, 0.4)), [10])[0]
    assert np.array_equal(base, again)
    steps = render_in_chunks(backend.start_job(job_input(voice, emo_weights, 0.4, steps=3)), [10])[0]
    assert not np.array_equal(base, steps)


def test_no_face_is_an_input_error(emo_weights, voice, tmp_path):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (128, 128), (200, 190, 180)).save(blank)
    with pytest.raises(InputError, match="no face found in portrait .*wall.png"):
        EmoBackend().start_job(job_input(voice, emo_weights, 0.9, portrait=blank))


def test_missing_or_incomplete_weights_name_what_is_missing(emo_weights, tmp_path):
    with pytest.raises(WeightsError, match="does not exist; assemble one with `emo weights init"):
        EmoBackend.weights_identity({"weights": str(tmp_path / "nowhere")})
    with pytest.raises(WeightsError, match="settings.emo.weights is not set"):
        EmoBackend.weights_identity({"weights": None})

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(emo_weights, broken)
    shutil.rmtree(broken / "vae")
    (broken / "audio_proj" / "diffusion_pytorch_model.safetensors").write_bytes(b"short")
    with pytest.raises(WeightsError) as info:
        EmoBackend.weights_identity({"weights": str(broken)})
    message = str(info.value)
    assert "part 'vae': folder" in message and "stabilityai/sd-vae-ft-mse" in message
    assert "part 'audio_proj': file" in message and "truncated or replaced" in message
    assert EmoBackend.weights_identity({"weights": str(emo_weights)}).startswith("emo-weights:sha256:")


def test_render_loop_with_chunks_and_resume_from_disk(emo_weights, voice, tmp_path):
    """The real render loop: chunks of 10 over clips of 12; losing the last chunk re-renders only it."""
    job = make_job(tmp_path / "out", audio=voice, backend="emo", resolution=64, chunk_frames=10,
                   options=emo_options(emo_weights))  # fmt: skip
    summary = render(make_plan(tmp_path / "out", [job]))
    assert summary.exit_code == 0
    first = decoded_frames(job.output)
    assert len(first) == 23
    journal = Journal.load(job.work_dir)
    del journal.chunks[2]
    journal.output = journal.output_sha256 = None
    journal.save(job.work_dir)
    job.output.unlink()
    events: list[dict] = []
    assert render(make_plan(tmp_path / "out", [job]), events=events.append).exit_code == 0
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [2]
    assert all(np.array_equal(a, b) for a, b in zip(decoded_frames(job.output), first, strict=True))


def test_sigkill_mid_render_then_resume_equals_an_uninterrupted_render(emo_weights, voice, tmp_path):
    job = {"audio": str(voice), "backend": "emo", "resolution": 64, "chunk_frames": 10,
           "options": emo_options(emo_weights)}  # fmt: skip

    def spec(folder: Path) -> Path:
        path = folder / "spec.json"
        folder.mkdir(exist_ok=True)
        path.write_text(json.dumps({"output_dir": str(folder / "out"), "jobs": [job]}))
        return path

    def run(path: Path) -> list[dict]:
        proc = subprocess.run([sys.executable, str(DRIVER), str(path)], env=driver_env(), capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    reference = run(spec(tmp_path / "reference"))[-1]["jobs"][0]["output"]

    killed = spec(tmp_path / "killed")
    kill_at(killed, "encode:1", tmp_path / "pause.fifo", deadline_s=300)
    (work,) = (tmp_path / "killed" / "out" / ".emo" / "jobs").iterdir()
    assert sorted(Journal.load(work).chunks) == [0]

    events = run(killed)
    # Chunk 1 (frames 10-19) generates clip 1 (frames 12-23) from the motion latents saved with chunk 0.
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [1, 2]
    output = events[-1]["jobs"][0]["output"]
    frames, expected = decoded_frames(Path(output)), decoded_frames(Path(reference))
    assert len(frames) == len(expected) == 23
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True))


def test_unusable_settings_are_named(emo_weights, voice):
    with pytest.raises(InputError, match="settings.emo.clip_frames \\+ motion_frames is 36"):
        EmoBackend().start_job(job_input(voice, emo_weights, 0.9, clip_frames=32))
    with pytest.raises(
        InputError, match="motion_frames \\(8\\) must not exceed settings.emo.clip_frames \\(6\\)"
    ):
        EmoBackend().start_job(job_input(voice, emo_weights, 0.9, clip_frames=6, motion_frames=8))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no usable CUDA GPU"):
            EmoBackend().start_job(job_input(voice, emo_weights, 0.9, device="cuda"))
