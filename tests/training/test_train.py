"""`emo train`: each stage trains exactly its set, learns, drops conditions, resumes bit for bit after
SIGKILL, exports weights that render. Tiny config: 64 px, f = 4, n = 4, the tiny VAE/wav2vec."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from factories import EMO, PORTRAIT, decoded_frames, emo_env, run_emo, run_to_pause, write_wav
from synthetic import rotating_video

from emo_cli.errors import EmoError
from emo_cli.training.config import Drop, TrainConfig, TrainConfigError, load_train_config
from emo_cli.training.train import RunError, build_trainer, named_parameters, trainable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends" / "emo"))
from tiny import make_weights  # noqa: E402

DEADLINE_S = 600
TINY = TrainConfig(clip_frames=4, steps=6, checkpoint_every=3, seed=1)
# Torch's own threads fight the other processes of a shared CI machine (tens of times slower).
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(dataset, start weights): two rolling portraits at 64 px (one train, one val identity)."""
    from emo_cli.training import PrepareSettings, prepare_dataset

    folder = tmp_path_factory.mktemp("train")
    videos = [rotating_video(folder / f"roll{s}.mp4", s, frames=40, seed=s) for s in (1, 3)]
    prepare_dataset(videos, folder / "data", PrepareSettings(resolution=64, val_fraction=0.5), None)
    return folder / "data", make_weights(folder)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(trainer) -> dict[str, torch.Tensor]:
    params = {k: p.detach().clone() for k, p in named_parameters(trainer.model).items()}
    for part in ("vae", "audio_encoder"):
        params.update({f"{part}.{k}": p.detach().clone() for k, p in getattr(trainer.model, part).named_parameters()})
    return params


GROUPS = {
    "stage1": ("reference_unet.", "face_locator.", "backbone.unet.down_blocks.0.attentions"),
    "stage2": ("backbone.unet.down_blocks.0.motion_modules", "backbone.audio_attention.", "audio_proj."),
    "stage3": ("backbone.unet.down_blocks.0.motion_modules", "backbone.speed_attention.", "speed_encoder."),
}


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_a_step_changes_exactly_the_stage_s_trainable_set(setup, stage):
    data, weights = setup
    trainer = build_trainer(stage, TINY, data, weights)
    before = snapshot(trainer)
    row = trainer.train_step(1)
    assert row["loss"] > 0 and row["grad_norm"] > 0
    after = snapshot(trainer)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = {k for k in before if k.startswith(("vae.", "audio_encoder.")) or not trainable(stage, k)}
    assert not changed & frozen, sorted(changed & frozen)[:5]
    for group in GROUPS[stage]:
        assert any(k.startswith(group) for k in changed), group
    # the other stages' own layers are untouched
    others = {"stage1": "backbone.audio_attention.", "stage2": "reference_unet.", "stage3": "audio_proj."}
    assert not any(k.startswith(others[stage]) for k in changed)


def _grads(trainer, step=1) -> dict[str, torch.Tensor]:
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.batch_loss(step).backward()
    trainer.pipeline.backbone.release_conditions()
    return {k: p.grad for k, p in trainer.params.items()}


def _zero(grads, prefix) -> bool:
    return all(g is None or not g.any() for k, g in grads.items() if k.startswith(prefix))


@pytest.mark.parametrize(
    ("stage", "drop", "path"),
    [("stage2", "audio", "backbone.audio_attention."), ("stage1", "reference", "reference_unet."),
     ("stage1", "both", "face_locator.")],
)  # fmt: skip
def test_a_path_dropped_with_probability_one_gets_zero_gradient(setup, stage, drop, path):
    data, weights = setup
    kept = _grads(build_trainer(stage, TrainConfig(clip_frames=4, drop=Drop(0, 0, 0)), data, weights))
    assert not _zero(kept, path)
    dropped = _grads(build_trainer(stage, TrainConfig(clip_frames=4, drop=Drop(**{drop: 1.0})), data, weights))
    assert _zero(dropped, path)
    assert not _zero(dropped, "backbone.unet.")  # the rest still learns


@pytest.mark.slow
def test_overfitting_one_batch_for_100_steps_at_least_halves_the_loss(setup):
    data, weights = setup
    trainer = build_trainer("stage1", TrainConfig(learning_rate=1e-3, drop=Drop(0, 0, 0), seed=2), data, weights)
    losses = [trainer.train_step(1)["loss"] for _ in range(100)]  # the same step: the same batch, noise, t
    assert losses[-1] <= 0.5 * losses[0], (losses[0], losses[-1])


def _train_cli(stage: str, config: Path, data: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return [*EMO, "train", stage, "--config", str(config), "--data", str(data), "--weights", str(weights),
            "--out", str(out), "--json", *extra]  # fmt: skip


@pytest.mark.slow
def test_six_steps_equal_three_steps_sigkill_resume_and_three_more_bitwise(setup, tmp_path):
    data, weights = setup
    config = tmp_path / "train.yaml"
    config.write_text("steps: 6\ncheckpoint_every: 3\nclip_frames: 4\nseed: 1\n")
    env = emo_env(**SUBPROCESS_ENV)
    whole = subprocess.run(_train_cli("stage2", config, data, weights, tmp_path / "whole"), env=env,
                           capture_output=True, text=True, timeout=DEADLINE_S)  # fmt: skip
    assert whole.returncode == 0, whole.stderr

    run = tmp_path / "killed"
    # Stopped at step 4 (past the checkpoint of step 3), then killed there.
    proc = run_to_pause(_train_cli("stage2", config, data, weights, run), "train:step:4", tmp_path / "pause.fifo",
                        env, deadline_s=DEADLINE_S, stdout=subprocess.DEVNULL)  # fmt: skip
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE_S)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003"]

    again = subprocess.run(_train_cli("stage2", config, data, weights, run, "--resume"), env=env,
                           capture_output=True, text=True, timeout=DEADLINE_S)  # fmt: skip
    assert again.returncode == 0, again.stderr
    started = [json.loads(line) for line in again.stdout.splitlines() if '"train_started"' in line]
    assert started[0]["start"] == 3

    a = torch.load(tmp_path / "whole" / "checkpoints" / "step-000006" / "state.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "step-000006" / "state.pt", weights_only=True)
    assert a["trainable"].keys() == b["trainable"].keys()
    assert all(torch.equal(a["trainable"][k], b["trainable"][k]) for k in a["trainable"])
    exp_a = [s["exp_avg"] for s in a["optimizer"]["state"].values()]
    exp_b = [s["exp_avg"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(exp_a, exp_b, strict=True))
    losses = [[json.loads(line)["loss"] for line in (r / "metrics.jsonl").read_text().splitlines()]
              for r in (tmp_path / "whole", run)]  # fmt: skip
    assert losses[0] == losses[1] and len(losses[0]) == 6


@pytest.mark.slow
def test_sigterm_exits_143_keeping_the_checkpoint_that_resume_continues_from(setup, tmp_path):
    """A scheduler's SIGTERM stops training like Ctrl-C: exit 128 + 15, the checkpoints kept."""
    data, weights = setup
    config = tmp_path / "train.yaml"
    config.write_text("steps: 2\ncheckpoint_every: 1\nseed: 1\n")
    env = emo_env(**SUBPROCESS_ENV)
    run = tmp_path / "run"
    proc = run_to_pause(_train_cli("stage1", config, data, weights, run), "train:step:1", tmp_path / "pause.fifo",
                        env, deadline_s=DEADLINE_S, stdout=subprocess.DEVNULL)  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 143, stderr
    assert b"interrupted: checkpoints in" in stderr and b"Traceback" not in stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000001"]
    again = subprocess.run(_train_cli("stage1", config, data, weights, run, "--resume"), env=env,
                           capture_output=True, text=True, timeout=DEADLINE_S)  # fmt: skip
    assert again.returncode == 0, again.stderr
    started = [json.loads(line) for line in again.stdout.splitlines() if '"train_started"' in line]
    assert started[0]["start"] == 1


MANIFEST = """\
version: 1
output_dir: out
defaults:
  backend: emo
  fps: 25
  resolution: 64
  seed: 3
  emo: {{weights: {weights}, steps: 2, clip_frames: 4}}
portraits: {{astro: astronaut.jpg}}
audio: {{voice: voice.wav}}
jobs:
  - {{portrait: astro, audio: voice}}
"""


@pytest.mark.slow
def test_export_renders_through_emo_render_and_changes_the_job_id(setup, tmp_path):
    data, weights = setup
    config = tmp_path / "train.yaml"
    config.write_text("steps: 1\ncheckpoint_every: 1\nclip_frames: 4\n")
    trained = run_emo(*_train_cli("stage3", config, data, weights, tmp_path / "run")[len(EMO):], timeout=DEADLINE_S,
                      **SUBPROCESS_ENV)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    exported = run_emo("train", "export", str(tmp_path / "run"), "--out", str(tmp_path / "weights"),
                       timeout=DEADLINE_S, **SUBPROCESS_ENV)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    index = json.loads((tmp_path / "weights" / "emo_weights.json").read_text())
    start = json.loads((weights / "emo_weights.json").read_text())
    record = index["training"]
    assert record["stage"] == "stage3" and record["step"] == 1
    assert index["clip_frames"] == 4  # what renders with these weights use unless a manifest says otherwise
    assert record["dataset_fingerprint"] == json.loads((data / "index.json").read_text())["fingerprint"]
    assert record["config_sha256"] == load_train_config(config).hash()
    assert index["content_sha256"] != start["content_sha256"]
    speed = json.loads((tmp_path / "weights" / "speed_encoder" / "config.json").read_text())
    assert speed["unit"] == "degrees/frame" and speed["percentiles"]
    backbone = json.loads((tmp_path / "weights" / "denoising_unet" / "config.json").read_text())
    assert backbone["speed_attention_mode"] == "frame_axis" and backbone["temporal_norm"] == "per_frame"

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PORTRAIT, project / "astronaut.jpg")
    write_wav(project / "voice.wav", 0.5)
    ids = []
    for folder in (weights, tmp_path / "weights"):
        manifest = project / f"{folder.name}-{len(ids)}.yaml"
        manifest.write_text(MANIFEST.format(weights=folder))
        planned = run_emo("plan", "--json", str(manifest), timeout=DEADLINE_S)
        assert planned.returncode == 0, planned.stderr
        ids.append(json.loads(planned.stdout)[0]["id"])
    assert ids[0] != ids[1]
    rendered = run_emo("render", "--json", str(manifest), timeout=DEADLINE_S, **SUBPROCESS_ENV)
    assert rendered.returncode == 0, rendered.stderr
    (done,) = [json.loads(line) for line in rendered.stdout.splitlines() if '"job_done"' in line]
    frames = decoded_frames(Path(done["output"]))
    assert len(frames) == 13 and frames[0].shape[:2] == (64, 64)


def test_bad_config_names_file_and_field(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("steps: 0\nlearning_rat: 1e-5\ndrop: {audio: 2}\nmixed_precision: fp8\n")
    with pytest.raises(TrainConfigError) as err:
        load_train_config(config)
    message = str(err.value)
    for needle in ("4 problem", "steps: 0", "learning_rat: unknown", "drop.audio", "mixed_precision: 'fp8'"):
        assert needle in message
    assert str(config) in message
    result = run_emo("train", "stage1", "--config", str(config), "--data", str(tmp_path), "--weights",
                     str(tmp_path), "--out", str(tmp_path / "run"), timeout=60)  # fmt: skip
    assert result.returncode == 2 and "learning_rat" in result.stderr and "Traceback" not in result.stderr


def test_bad_data_weights_and_run_folders_are_clear_errors(setup, tmp_path):
    from emo_cli.training.train import export_run, train

    data, weights = setup
    with pytest.raises(EmoError, match="index.json"):
        train("stage1", config=TINY, data=tmp_path, weights=weights, out=tmp_path / "r1")
    with pytest.raises(EmoError, match="emo_weights.json is missing"):
        train("stage1", config=TINY, data=data, weights=tmp_path, out=tmp_path / "r2")
    with pytest.raises(RunError, match="not a training run"):
        export_run(tmp_path, tmp_path / "w")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not a training run"):
        train("stage1", config=TINY, data=data, weights=weights, out=busy)


def test_ema_and_min_snr_weighting(setup):
    data, weights = setup
    plain = build_trainer("stage3", TrainConfig(clip_frames=4, seed=3), data, weights)
    weighted = build_trainer("stage3", TrainConfig(clip_frames=4, seed=3, snr_gamma=1e-6, ema_decay=0.5), data, weights)
    a, b = plain.train_step(1), weighted.train_step(1)
    assert b["loss"] != a["loss"] and 0 < b["loss"] < float("inf")  # the same batch, another weighting
    weighted.train_step(2)  # diffusers' EMA copies the weights on its first update, then lags
    params = list(weighted.params.values())
    shadow = weighted.ema.shadow_params
    assert any(not torch.equal(p, s) for p, s in zip(params, shadow, strict=True))  # EMA lags the weights
    state = weighted.state()
    assert state["ema"] is not None and len(state["ema"]["shadow_params"]) == len(params)


def test_a_run_is_resumed_only_with_the_same_settings(setup, tmp_path):
    from emo_cli.training.train import train

    data, weights = setup
    run = tmp_path / "run"
    one = TrainConfig(clip_frames=4, steps=1, checkpoint_every=1)
    summary = train("stage3", config=one, data=data, weights=weights, out=run)
    assert summary["checkpoint"].endswith("step-000001")
    with pytest.raises(RunError, match="pass --resume"):
        train("stage3", config=one, data=data, weights=weights, out=run)
    with pytest.raises(RunError, match="config_sha256 differs"):
        train("stage3", config=TrainConfig(clip_frames=4, steps=2, seed=5), data=data, weights=weights, out=run,
              resume=True)  # fmt: skip
    with pytest.raises(RunError, match="stage differs"):
        train("stage2", config=one, data=data, weights=weights, out=run, resume=True)
    done = train("stage3", config=one, data=data, weights=weights, out=run, resume=True)  # nothing left to do
    assert done["resumed_from"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_batch_of_two_trains(setup):
    data, weights = setup
    trainer = build_trainer("stage2", TrainConfig(clip_frames=4, batch_size=2, seed=4), data, weights)
    row = trainer.train_step(1)
    assert 0 < row["loss"] < float("inf") and row["grad_norm"] > 0


def test_the_command_reports_progress_in_plain_lines_when_piped(setup, tmp_path):
    data, weights = setup
    config = tmp_path / "train.yaml"
    config.write_text("steps: 2\ncheckpoint_every: 1\nclip_frames: 4\n")
    result = run_emo("train", "stage3", "--config", str(config), "--data", str(data), "--weights", str(weights),
                     "--out", str(tmp_path / "run"), timeout=DEADLINE_S, **SUBPROCESS_ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("stage3: ") and "steps 1..2" in lines[0]
    assert [line.split(":")[0] for line in lines[1:3]] == ["step 1", "step 2"]
    assert "checkpoint" in lines[2] and "steps/s" in lines[2]
    assert "stage3 done: 2 steps" in result.stdout
