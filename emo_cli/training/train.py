"""EMO's three training stages on a prepared dataset, resumable bit for bit.

    stage1  image: backbone spatial layers + ReferenceNet + face locator, single frames
            (temporal modules skipped), the reference another frame of the same clip
    stage2  video: temporal modules + audio-attention + audio projection, n + f contiguous
            frames whose first n are ground-truth motion frames (a share as first clips)
    stage3  speed: temporal modules + speed attention + speed encoder (audio frozen)

Everything else is frozen and stays bit-identical. The loss is epsilon- (or v-) MSE at a
uniform timestep, optionally min-SNR weighted; AdamW with warm-up, gradient clipping,
gradient checkpointing, optional EMA (diffusers.training_utils); on CUDA bf16 autocast over
float32 master weights (accelerate).

Resume: every random draw of step k (its windows, drops, first-clip cases, noise, timesteps)
comes from generators seeded with (seed, k), so a step is a pure function of the weights and k.
A checkpoint holds the trainable weights, the optimizer and LR-schedule states, the EMA, the
RNG states and the step; a run resumed from it on CPU is bit-identical to one that never
stopped, also after SIGKILL (checkpoints are written to a temporary folder and renamed).

The run folder:

    RUN/run.json                     stage, settings, config hash, dataset fingerprint, start weights
    RUN/metrics.jsonl                one line per step (loss, lr, grad norm, steps/s)
    RUN/checkpoints/step-000500/     state.pt + meta.json (the K newest are kept)
    RUN/samples/step-000500-0.mp4    clips rendered from the val split every M steps
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emo_cli.errors import EmoError, InputError, WeightsError
from emo_cli.execution.checkpoints import pause_point
from emo_cli.fsutil import atomic_write_text
from emo_cli.training.config import STAGES, Drop, TrainConfig, TrainConfigError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
RUN_FORMAT = 1
PARTS = ("reference_unet", "backbone", "face_locator", "audio_proj", "speed_encoder")

Event = Callable[[dict[str, Any]], None]


class RunError(EmoError):
    """A run folder cannot be started, resumed or exported."""


def trainable(stage: str, name: str) -> bool:
    """Whether parameter `name` ("part.path") is trained in `stage`."""
    part, _, rest = name.partition(".")
    temporal = part == "backbone" and rest.startswith("unet.") and ".motion_modules." in rest
    if stage == "stage1":
        return part in ("reference_unet", "face_locator") or (part == "backbone" and rest.startswith("unet.")
                                                             and not temporal)  # fmt: skip
    if stage == "stage2":
        return temporal or part == "audio_proj" or (part == "backbone" and rest.startswith(("audio_attention.",
                                                                                            "region_audio.")))  # fmt: skip
    if stage == "stage3":
        return temporal or part == "speed_encoder" or (part == "backbone" and rest.startswith("speed_attention."))
    raise ValueError(f"unknown stage {stage!r}")


def named_parameters(model) -> dict[str, Any]:
    return {f"{part}.{name}": p for part in PARTS for name, p in getattr(model, part).named_parameters()}


def _seed(*parts: int | str) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in ("emo-train", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class Trainer:
    """One stage of training: the model, its optimizer and schedule, the data, the step."""

    stage: str
    config: TrainConfig
    data: Any  # TrainingData, train split
    model: Any  # EmoModel
    pipeline: Any  # EmoPipeline over `model` (its ReferenceNet recorder is shared)
    accelerator: Any
    optimizer: Any
    lr_schedule: Any
    noise_scheduler: Any
    ema: Any = None
    step: int = 0

    @property
    def params(self) -> dict[str, Any]:
        return {k: p for k, p in named_parameters(self.model).items() if trainable(self.stage, k)}

    # -- one step -------------------------------------------------------------------------------
    def batch_loss(self, step: int):
        """The loss of training step `step` (its draws are a pure function of seed and step)."""
        import torch

        from emo_cli.backends.emo.audio import AudioFeatures
        from emo_cli.backends.emo.modules import Conditions
        from emo_cli.backends.emo.renderer import AUDIO_WINDOW

        cfg, model, p = self.config, self.model, self.pipeline
        device = p.device
        image = self.stage == "stage1"
        n = 0 if image else p.motion_frames
        f = 1 if image else cfg.clip_frames
        rng = np.random.default_rng([cfg.seed, step, 1])
        generator = torch.Generator("cpu").manual_seed(_seed(cfg.seed, step, "noise"))
        latents, refs, motions, audios, speeds, masks = [], [], [], [], [], []
        keep_ref, keep_audio, keep_face = [], [], []
        for i in range(cfg.batch_size):
            clip_index, start = self.data.sample(step * cfg.batch_size + i, n + f, cfg.seed)
            window = self.data.window(clip_index, start, n + f)
            frames_in_clip = window.clip_frames
            ref_frame = int(rng.integers(frames_in_clip - 1 if image else frames_in_clip))
            if image and ref_frame >= start:  # another frame than the target
                ref_frame += 1
            reference = self.data.window(clip_index, ref_frame, 1).frames
            pixels = np.concatenate([reference, window.frames])
            encoded = encode(p, pixels)
            refs.append(encoded[:1])
            latents.append(encoded[1 + n :])
            if not image:
                first_clip = rng.random() < cfg.first_clip_share
                motions.append(p.first_motion(encoded[:1], n) if first_clip else encoded[1 : 1 + n])
                features = AudioFeatures(
                    model.audio_encoder, window.audio, sample_rate=self.data.sample_rate, fps=self.data.fps,
                    num_frames=frames_in_clip, layers=int(model.audio_proj.config.layers),
                    normalize=model.audio_normalize,
                )  # fmt: skip
                audios.append(features.window(start + n, f, AUDIO_WINDOW))
                speeds.append(torch.from_numpy(np.asarray(window.speeds, dtype=np.float32)))
            masks.append(torch.from_numpy(window.face_mask)[None])
            u, drop = rng.random(), cfg.drop
            both = u < drop.both
            keep_ref.append(not (both or drop.both <= u < drop.both + drop.reference))
            keep_audio.append(not (both or drop.both + drop.reference <= u < drop.both + drop.reference + drop.audio))
            keep_face.append(not both)

        keep_reference = torch.tensor(keep_ref, device=device)
        keep_audio_t = torch.tensor(keep_audio, device=device)
        samples = cfg.batch_size
        # ReferenceNet: one pass over [reference, motion frames] of every sample (trained in stage 1).
        ref_in = torch.cat([torch.cat([r, m]) for r, m in zip(refs, motions, strict=True)]) if motions else \
            torch.cat(refs)  # fmt: skip
        context = p.backbone.empty_context(ref_in.shape[0], ref_in.dtype, device)
        tokens, features = p.recorder.record(ref_in, context, grad=image)
        reference = {k: t.view(samples, 1 + n, *t.shape[1:])[:, 0] for k, t in tokens.items()}
        motion = {k: t.view(samples, 1 + n, *t.shape[1:])[:, 1:] for k, t in features.items()} if n else {}
        audio = speed = None
        if not image:
            audio = model.audio_proj(torch.cat(audios).to(device))
            speed = model.speed_encoder(torch.stack(speeds).to(device))
        face = model.face_locator(torch.stack(masks).to(device))
        face = face * torch.tensor(keep_face, device=device, dtype=face.dtype).view(-1, 1, 1, 1)

        x0 = torch.stack(latents).permute(0, 2, 1, 3, 4)  # (samples, c, f, h, w)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        sched = self.noise_scheduler
        t = torch.randint(0, sched.config.num_train_timesteps, (samples,), generator=generator).to(device)
        noisy = sched.add_noise(x0, noise, t)
        target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
        cond = Conditions(reference=reference, motion=motion, audio=audio, speed=speed, frames=f,
                          keep_reference=keep_reference, keep_audio=keep_audio_t)  # fmt: skip
        with self.accelerator.autocast(), (temporal_off(p.backbone) if image else contextlib.nullcontext()):
            pred = p.backbone(noisy, t, cond, face_features=face)
        per_sample = (pred.float() - target.float()).square().mean(dim=(1, 2, 3, 4))
        if cfg.snr_gamma is not None:
            from diffusers.training_utils import compute_snr

            snr = compute_snr(sched, t)
            weight = torch.clamp(snr, max=cfg.snr_gamma)
            weight = weight / (snr if sched.config.prediction_type == "epsilon" else snr + 1)
            per_sample = per_sample * weight
        return per_sample.mean()

    def train_step(self, step: int) -> dict[str, float]:
        import torch

        params = list(self.params.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.batch_loss(step)
        self.accelerator.backward(loss)
        self.pipeline.backbone.release_conditions()
        norm = self.accelerator.clip_grad_norm_(params, self.config.grad_clip)
        lr = self.lr_schedule.get_last_lr()[0]
        self.optimizer.step()
        self.lr_schedule.step()
        if self.ema is not None:
            self.ema.step(params)
        self.step = step
        return {"step": step, "loss": float(loss.detach()), "lr": float(lr),
                "grad_norm": float(torch.as_tensor(norm).float())}  # fmt: skip

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        import torch

        return {
            "step": self.step,
            "trainable": {k: p.detach().cpu().clone() for k, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        import torch

        params = self.params
        missing = sorted(set(params) - set(state["trainable"]))
        if missing:
            raise RunError(f"the checkpoint lacks {len(missing)} trainable tensors (first: {missing[0]}); it was "
                           "written by another stage or model")  # fmt: skip
        with torch.no_grad():
            for name, param in params.items():
                value = state["trainable"][name]
                if value.shape != param.shape:
                    raise RunError(f"checkpoint tensor {name} has shape {tuple(value.shape)}, the model "
                                   f"{tuple(param.shape)}")  # fmt: skip
                param.copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = int(state["step"])


def encode(pipeline, frames: np.ndarray):
    """(k, H, W, 3) uint8 -> (k, c, h, w) latents (the posterior's mode: no randomness), no grad."""
    import torch

    with torch.no_grad():
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
        vae = pipeline.model.vae
        latent = vae.encode(pixels.to(pipeline.device, pipeline.dtype)).latent_dist.mode()
        return latent * pipeline.scaling_factor


@contextlib.contextmanager
def temporal_off(backbone):
    """Stage 1 trains single images: the temporal modules are skipped (EMO adds them in stage 2)."""
    from emo_cli.backends.emo.modules import _skip_temporal

    saved = []
    for block in (*backbone.unet.down_blocks, *backbone.unet.up_blocks, backbone.unet.mid_block):
        for module in getattr(block, "motion_modules", None) or ():
            saved.append((module, module.__dict__.get("forward")))
            module.forward = _skip_temporal
    try:
        yield
    finally:
        for module, forward in saved:
            if forward is None:
                del module.forward
            else:
                module.forward = forward


# -- building a trainer --------------------------------------------------------------------------------
def build_trainer(stage: str, config: TrainConfig, data_root: Path, weights: Path) -> Trainer:
    import torch
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    from emo_cli.backends.emo.modules import EmoBackbone
    from emo_cli.backends.emo.pipeline import EmoPipeline, load_model
    from emo_cli.backends.emo.weights import check_weights
    from emo_cli.training.data import TrainingData

    if stage not in STAGES:
        raise RunError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    data = TrainingData(data_root, "train")
    if not data.clips:
        raise InputError(f"{data_root / 'index.json'}: the train split holds no clips; prepare more footage")
    if check_weights(weights).get("model", "emo") != "emo":
        raise WeightsError(f"--weights {weights}: only EMO weights can be trained (these are imported Hallo weights)")
    device = torch.device(config.device if config.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError(f"device: {config.device} is set but no CUDA device is available")
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "no"
    accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    model = load_model(weights, device=device)
    model.backbone = EmoBackbone.from_pretrained(
        Path(weights) / "denoising_unet", temporal_norm=config.temporal_norm,
        speed_attention_mode=config.speed_attention_mode,
    ).to(device)  # fmt: skip
    try:
        model.speed_encoder.calibrate(data.speed_table)
    except ValueError as exc:
        raise InputError(f"{data_root / 'index.json'}: speed: {exc}; prepare the dataset with --speed-buckets "
                         f"{len(model.speed_encoder.config.centers)}") from None  # fmt: skip
    if data.resolution % (2 ** (len(model.vae.config.block_out_channels) - 1)):
        raise InputError(f"{data_root / 'index.json'}: resolution {data.resolution} is not a multiple of the VAE's "
                         "downscale")  # fmt: skip
    pipeline = EmoPipeline(model)
    named = named_parameters(model)
    chosen = []
    for name, param in named.items():
        param.requires_grad_(trainable(stage, name))
        if param.requires_grad:
            chosen.append(param)
    for part in PARTS:
        getattr(model, part).train(any(trainable(stage, f"{part}.{n}") for n, _ in getattr(model, part).named_parameters()))
    if config.gradient_checkpointing:
        model.backbone.unet.enable_gradient_checkpointing()
        if stage == "stage1":
            model.reference_unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(chosen, lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.warmup_steps)
    noise_scheduler = DDPMScheduler.from_config(model.scheduler_config)
    ema = None
    if config.ema_decay is not None:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(chosen, decay=config.ema_decay)
    return Trainer(stage, config, data, model, pipeline, accelerator, optimizer, lr_schedule, noise_scheduler, ema)


# -- the run folder ------------------------------------------------------------------------------------
def run_record(stage: str, config: TrainConfig, data_root: Path, weights: Path) -> dict[str, Any]:
    from emo_cli.backends.emo.weights import read_index
    from emo_cli.training.index import load_index

    return {
        "format": RUN_FORMAT,
        "stage": stage,
        "config": config.to_dict(),
        "config_sha256": config.hash(),
        "data": str(Path(data_root).resolve()),
        "data_fingerprint": load_index(data_root)["fingerprint"],
        "weights": str(Path(weights).resolve()),
        "weights_sha256": read_index(weights)["content_sha256"],
    }


def checkpoints(run: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    folder = Path(run) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step-*") if (p / "meta.json").is_file())


def save_checkpoint(trainer: Trainer, run: Path) -> Path:
    """Write the trainer's state to RUN/checkpoints/step-N atomically; keep the newest K."""
    import torch

    folder = run / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{trainer.step:06d}"
    tmp = folder / f".step-{trainer.step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / "state.pt", "wb") as fh:
        torch.save(trainer.state(), fh)
        fh.flush()
        os.fsync(fh.fileno())
    atomic_write_text(tmp / "meta.json", json.dumps({"step": trainer.step, "stage": trainer.stage}) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in checkpoints(run)[: -trainer.config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise RunError(f"checkpoint {path} cannot be read ({exc}); delete it to resume from the one before") from exc


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines of steps after `step` (a killed run may have logged past its checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            break  # a line cut by the kill: it and anything after it go
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def train(
    stage: str,
    *,
    config: TrainConfig,
    data: Path | str,
    weights: Path | str,
    out: Path | str,
    resume: bool = False,
    events: Event | None = None,
) -> dict[str, Any]:
    """Run (or resume) one training stage into the run folder `out`; returns its summary."""
    emit = events or (lambda event: None)
    run, data, weights = Path(out), Path(data), Path(weights)
    record = run_record(stage, config, data, weights)
    run_file = run / RUN_FILE
    if run_file.is_file():
        if not resume:
            raise RunError(f"{run} already holds a training run; pass --resume to continue it or choose another --out")
        old = json.loads(run_file.read_text())
        for key, what in (("stage", "stage"), ("config_sha256", "--config settings"),
                          ("data_fingerprint", "dataset (--data)"), ("weights_sha256", "start weights (--weights)")):  # fmt: skip
            if old.get(key) != record[key]:
                raise RunError(f"{run_file}: {key} differs: this run was started with another {what}; resume it "
                               "with the same arguments or choose another --out")  # fmt: skip
    elif run.exists() and any(run.iterdir()):
        raise RunError(f"--out {run} exists and is not a training run; choose an empty or new folder")
    trainer = build_trainer(stage, config, data, weights)
    run.mkdir(parents=True, exist_ok=True)
    if not run_file.is_file():
        atomic_write_text(run_file, json.dumps(record, indent=1, sort_keys=True) + "\n")
    start = 0
    saved = checkpoints(run)
    if saved:
        trainer.load_state(load_checkpoint(saved[-1]))
        start = trainer.step
    metrics = run / METRICS_FILE
    _truncate_metrics(metrics, start)
    trainable_count = sum(p.numel() for p in trainer.params.values())
    total = sum(p.numel() for p in named_parameters(trainer.model).values())
    emit({"event": "train_started", "stage": stage, "steps": config.steps, "start": start,
          "trainable": trainable_count, "parameters": total, "device": str(trainer.pipeline.device)})  # fmt: skip
    last = time.perf_counter()
    first_loss = None
    with open(metrics, "a") as log:
        for step in range(start + 1, config.steps + 1):
            row = trainer.train_step(step)
            now = time.perf_counter()
            row["steps_per_s"] = round(1.0 / max(now - last, 1e-9), 4)
            last = now
            first_loss = row["loss"] if first_loss is None else first_loss
            log.write(json.dumps(row) + "\n")
            log.flush()
            emit({"event": "step", **row, "steps": config.steps})
            if step % config.checkpoint_every == 0 or step == config.steps:
                path = save_checkpoint(trainer, run)
                emit({"event": "checkpoint", "step": step, "path": str(path)})
            if config.sample_every and step % config.sample_every == 0:
                for path in render_samples(trainer, run, data):
                    emit({"event": "sample", "step": step, "path": str(path)})
            pause_point(f"train:step:{step}")  # tests stop a run here, the step and its checkpoint done
    summary = {"stage": stage, "steps": config.steps, "resumed_from": start, "run": str(run),
               "checkpoint": str(checkpoints(run)[-1]) if checkpoints(run) else None}  # fmt: skip
    emit({"event": "train_done", **summary})
    return summary


def render_samples(trainer: Trainer, run: Path, data_root: Path) -> list[Path]:
    """Clips from fixed val windows with the weights in training (reference: the window's first frame)."""
    import torch

    from emo_cli.backends.emo.audio import AudioFeatures
    from emo_cli.backends.emo.renderer import AUDIO_WINDOW
    from emo_cli.media.segment import encode_segment
    from emo_cli.training.data import TrainingData

    val = TrainingData(data_root, "val")
    p, cfg = trainer.pipeline, trainer.config
    n, f = p.motion_frames, cfg.clip_frames
    out = []
    was = {part: getattr(trainer.model, part).training for part in PARTS}
    for part in PARTS:
        getattr(trainer.model, part).eval()
    try:
        for k, (clip_index, start) in enumerate(val.evenly_spaced(n + f, cfg.samples)):
            window = val.window(clip_index, start, n + f)
            encoded = encode(p, window.frames)
            features = AudioFeatures(p.model.audio_encoder, window.audio, sample_rate=val.sample_rate, fps=val.fps,
                                     num_frames=window.clip_frames, layers=int(p.model.audio_proj.config.layers),
                                     normalize=p.model.audio_normalize)  # fmt: skip
            with torch.no_grad():
                latents = p.generate_clip(
                    reference_latent=encoded[:1], motion_latents=encoded[:n],
                    audio_features=features.window(start + n, f, AUDIO_WINDOW),
                    face_features=p.face_features(window.face_mask), speed=float(np.mean(window.speeds)),
                    generator=torch.Generator("cpu").manual_seed(_seed(cfg.seed, trainer.step, "sample", k)),
                    steps=cfg.sample_steps,
                )  # fmt: skip
                frames = p.decode(latents)
            path = run / SAMPLES / f"step-{trainer.step:06d}-{k}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            encode_segment(np.concatenate([window.frames[n:], frames], axis=2), path, fps=val.fps, gop=f)
            out.append(path)
    finally:
        for part, mode in was.items():
            getattr(trainer.model, part).train(mode)
    return out


# -- export ----------------------------------------------------------------------------------------------
def export_run(run: Path | str, out: Path | str, overwrite: bool = False) -> dict[str, Any]:
    """RUN's newest checkpoint (its EMA weights when the run kept one) -> a weights folder `out`.

    The folder is the start weights with the trained parts replaced and the speed encoder
    calibrated to the dataset; its index carries a `training` record (stage, step, dataset
    fingerprint, config hash, start weights), so its content hash, and every job id that names
    it, changes with the weights.
    """
    import torch

    from emo_cli.backends.emo.assemble import PART_FOLDERS
    from emo_cli.backends.emo.weights import atomic_dir, read_index, write_index

    run = Path(run)
    run_file = run / RUN_FILE
    if not run_file.is_file():
        raise RunError(f"{run} is not a training run ({RUN_FILE} is missing); pass the --out folder of `emo train`")
    record = json.loads(run_file.read_text())
    saved = checkpoints(run)
    if not saved:
        raise RunError(f"{run} has no checkpoint yet; train at least checkpoint_every steps first")
    weights = Path(record["weights"])
    if not weights.is_dir() or read_index(weights)["content_sha256"] != record["weights_sha256"]:
        raise RunError(f"{run_file}: the start weights {weights} are gone or changed since training began "
                       f"(content_sha256 {record['weights_sha256'][:12]}...); export needs them unchanged")  # fmt: skip
    from emo_cli.training.index import load_index

    if load_index(Path(record["data"]))["fingerprint"] != record["data_fingerprint"]:
        raise RunError(f"{run_file}: the dataset {record['data']} changed since training began (its fingerprint "
                       "differs); export calibrates the head speed from it, so it needs the same dataset")  # fmt: skip
    settings = dict(record["config"])
    config = TrainConfig(**{**settings, "drop": Drop(**settings["drop"]), "device": "cpu",
                            "gradient_checkpointing": False})  # fmt: skip
    trainer = build_trainer(record["stage"], config, Path(record["data"]), weights)
    state = load_checkpoint(saved[-1])
    trainer.load_state(state)
    if trainer.ema is not None:
        trainer.ema.copy_to(list(trainer.params.values()))
    model = trainer.model
    source = read_index(weights)
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        for folder in (p for p in weights.iterdir() if p.is_dir()):
            shutil.copytree(folder, tmp / folder.name)
        for part in PARTS:
            target = tmp / PART_FOLDERS.get(part, "denoising_unet" if part == "backbone" else part)
            for stale in target.glob("*.safetensors"):
                stale.unlink()
            module = getattr(model, part)
            with torch.no_grad():
                module.requires_grad_(False)
            module.save_pretrained(target, safe_serialization=True)
        training = {
            "stage": record["stage"], "step": int(state["step"]), "dataset_fingerprint": record["data_fingerprint"],
            "config_sha256": record["config_sha256"], "start_weights_sha256": record["weights_sha256"],
            "ema": trainer.ema is not None,
        }  # fmt: skip
        extra = {"dtype": "float32", "trained": True, "training": training}
        # The clip length the temporal modules learnt: what `backend: emo` renders by default.
        # Stage 1 learns single frames, so it keeps what the start weights said, if anything.
        clip_frames = config.clip_frames if record["stage"] != "stage1" else source.get("clip_frames")
        if clip_frames is not None:
            extra["clip_frames"] = int(clip_frames)
        index = write_index(tmp, source.get("sources", {}), extra=extra)
    return index
