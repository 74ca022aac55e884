"""`train.yaml`: the settings of one training run, checked before any model is loaded.

Every key is optional (the defaults are the paper's where it gives one); unknown keys and bad
values are errors naming the file and the field, all of them at once. The config hash (sha256
of the canonical JSON of the resolved settings) goes into the run and the exported weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emo_cli.errors import EmoError
from emo_cli.planning.fingerprint import canonical_json

STAGES = ("stage1", "stage2", "stage3")
MIXED_PRECISION = ("auto", "no", "bf16")


class TrainConfigError(EmoError):
    """train.yaml is unreadable or holds a bad value."""

    exit_code = 2


@dataclass(frozen=True)
class Drop:
    """Per-sample probabilities of dropping a condition (classifier-free guidance training).

    `both` drops the reference, the audio and the face locator together: inference's
    unconditional branch. Stage 1 has no audio; there `audio` is ignored.
    """

    reference: float = 0.05
    audio: float = 0.05
    both: float = 0.05


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 1000
    batch_size: int = 1
    learning_rate: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    clip_frames: int = 12  # f (stages 2 and 3); stage 1 trains single frames
    first_clip_share: float = 0.05  # stage 2/3 windows whose motion frames stand in for a first clip
    drop: Drop = field(default_factory=Drop)
    mixed_precision: str = "auto"  # auto: bf16 autocast (fp32 master weights) on CUDA, fp32 on CPU
    gradient_checkpointing: bool = True
    ema_decay: float | None = None  # e.g. 0.9999; export writes the EMA weights
    snr_gamma: float | None = None  # min-SNR loss weighting (5.0 is the paper's value)
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    sample_every: int = 0  # 0: no samples
    sample_steps: int = 20  # DDIM steps of a sample clip
    samples: int = 1  # val windows rendered at each sample step
    temporal_norm: str = "per_frame"  # the backbone's temporal GroupNorm (see EmoBackbone)
    speed_attention_mode: str = "frame_axis"
    device: str = "auto"  # auto: cuda if available

    def hash(self) -> str:
        return hashlib.sha256(canonical_json(dataclasses.asdict(self)).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RULES: dict[str, tuple[type | tuple, Any]] = {
    "seed": (int, lambda v: v >= 0),
    "steps": (int, lambda v: v >= 1),
    "batch_size": (int, lambda v: v >= 1),
    "learning_rate": ((int, float), lambda v: v > 0),
    "warmup_steps": (int, lambda v: v >= 0),
    "weight_decay": ((int, float), lambda v: v >= 0),
    "grad_clip": ((int, float), lambda v: v > 0),
    "clip_frames": (int, lambda v: v >= 1),
    "first_clip_share": ((int, float), lambda v: 0 <= v <= 1),
    "mixed_precision": (str, lambda v: v in MIXED_PRECISION),
    "gradient_checkpointing": (bool, None),
    "ema_decay": ((int, float, type(None)), lambda v: v is None or 0 < v < 1),
    "snr_gamma": ((int, float, type(None)), lambda v: v is None or v > 0),
    "checkpoint_every": (int, lambda v: v >= 1),
    "keep_checkpoints": (int, lambda v: v >= 1),
    "sample_every": (int, lambda v: v >= 0),
    "sample_steps": (int, lambda v: v >= 1),
    "samples": (int, lambda v: v >= 1),
    "temporal_norm": (str, lambda v: v in ("joint", "per_frame")),
    "speed_attention_mode": (str, lambda v: v in ("per_frame", "frame_axis")),
    "device": (str, lambda v: v == "auto" or v == "cpu" or v.startswith("cuda")),
}
_HINTS = {
    "mixed_precision": f"one of {', '.join(MIXED_PRECISION)}",
    "temporal_norm": "joint or per_frame",
    "speed_attention_mode": "per_frame or frame_axis",
    "device": "auto, cpu or cuda[:N]",
    "first_clip_share": "a share between 0 and 1",
    "ema_decay": "null or a number between 0 and 1",
}


def _check(path: str, name: str, value: Any, kind, rule, problems: list[str]) -> None:
    bad_type = isinstance(value, bool) and kind is not bool or not isinstance(value, kind)
    if bad_type or (rule is not None and not rule(value)):
        hint = _HINTS.get(name, "a number >= 0" if kind is not bool else "true or false")
        problems.append(f"{path}: {name}: {value!r} is not allowed ({hint})")


def load_train_config(path: Path | str | None) -> TrainConfig:
    """The settings in `path` (None: all defaults). Raises TrainConfigError listing every problem."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise TrainConfigError(f"--config {path}: file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TrainConfigError(f"{path} cannot be read as YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise TrainConfigError(f"{path}: expected a mapping of settings, got {type(doc).__name__}")
    problems: list[str] = []
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in known:
            problems.append(f"{path}: {key}: unknown setting (known: {', '.join(sorted(known))})")
        elif key == "drop":
            if not isinstance(value, dict):
                problems.append(f"{path}: drop: expected a mapping of reference/audio/both probabilities")
                continue
            drops = {}
            for name, p in value.items():
                if name not in ("reference", "audio", "both"):
                    problems.append(f"{path}: drop.{name}: unknown (reference, audio or both)")
                elif isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                    problems.append(f"{path}: drop.{name}: {p!r} is not a probability between 0 and 1")
                else:
                    drops[name] = float(p)
            values["drop"] = Drop(**drops)
        else:
            kind, rule = _RULES[key]
            _check(str(path), key, value, kind, rule, problems)
            values[key] = float(value) if isinstance(value, int) and float in (kind if isinstance(kind, tuple) else
                                                                               (kind,)) else value  # fmt: skip
    if not problems:
        drop = values.get("drop", Drop())
        if drop.reference + drop.audio + drop.both > 1:
            problems.append(f"{path}: drop: the probabilities add up to more than 1")
    if problems:
        raise TrainConfigError(f"{len(problems)} problem(s) in the training config:\n  " + "\n  ".join(problems))
    return TrainConfig(**values)
