"""`EmoBackend`: the options schema, the weights identity and the plan-time option checks.

This module stays light (no torch): `emo validate` and `emo plan` read the options schema and
the weights identity (the content hash in the weights index). The model is loaded on the first
job and kept for the next ones; `renderer.py` and `pipeline.py` hold the torch code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from emo_cli.backends.base import Backend, JobInput, JobRenderer, OptionProblem
from emo_cli.backends.emo.weights import resolve_weights_dir, weights_identity
from emo_cli.errors import BackendError, EmoError

# What the denoising network's config says when it does not say (EMO's n; UNetMotionModel's own).
DEFAULT_MOTION_FRAMES = 4
EMO_CLIP_FRAMES = 12  # f of the paper, for weights whose index does not say
DEFAULT_TEMPORAL_LENGTH = 32


def backbone_config(weights: Path) -> dict[str, Any]:
    """The denoising network's saved config (`denoising_unet/config.json`), read as JSON: no torch.
    {} when it is missing or unreadable (the weights' own checks report that)."""
    try:
        config = json.loads((weights / "denoising_unet" / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


class EmoBackend(Backend):
    name: ClassVar[str] = "emo"
    version: ClassVar[str] = "0.1"
    sample_rate: ClassVar[int] = 16000
    resources: ClassVar[str] = "gpu"
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "weights": {
                "description": "EMO weights folder (from `emo weights init`), relative to the manifest; "
                               "unset: $EMO_WEIGHTS.",
                "type": ["string", "null"], "minLength": 1, "default": None, "format": "path",
            },
            "steps": {"description": "Denoising steps per clip.", "type": "integer", "minimum": 1,
                      "maximum": 1000, "default": 40},
            "scheduler": {"description": "DDIM (the paper's) or DPM-Solver++ (fewer steps).",
                          "enum": ["ddim", "dpmsolver++"], "default": "ddim"},
            "guidance_scale": {"description": "Classifier-free guidance scale; 1 or less turns CFG off.",
                               "type": "number", "minimum": 0, "maximum": 30, "default": 3.5},
            "clip_frames": {"description": "Frames generated per clip (f); unset: the weights' own (12 for EMO, "
                            "16 for Hallo).", "type": ["integer", "null"], "minimum": 1, "maximum": 64,
                            "default": None},
            "motion_frames": {"description": "Frames of the previous clip that condition the next (n); "
                              "unset: the weights' own (4 for EMO, 2 for Hallo).", "type": ["integer", "null"],
                              "minimum": 0, "maximum": 16, "default": None},
            "pose_weight": {"description": "Hallo weights: how strongly the audio drives the head and background "
                            "(the full-image region); Hallo's --pose_weight.", "type": "number", "minimum": 0,
                            "maximum": 10, "default": 1.0},
            "face_weight": {"description": "Hallo weights: how strongly the audio drives the face without the lips "
                            "(expression); Hallo's --face_weight.", "type": "number", "minimum": 0, "maximum": 10,
                            "default": 1.0},
            "lip_weight": {"description": "Hallo weights: how strongly the audio drives the lips; Hallo's "
                           "--lip_weight.", "type": "number", "minimum": 0, "maximum": 10, "default": 1.0},
            "face_expand_ratio": {"description": "Hallo weights: the face box from the landmarks grown by this "
                                  "factor (the face region and masks); Hallo's --face_expand_ratio.",
                                  "type": "number", "minimum": 1, "maximum": 3, "default": 1.2},
            "audio_features": {"description": "Hallo weights: `whole` runs wav2vec once over the whole file as "
                               "Hallo does (memory grows with the duration); `windowed` computes 10 s blocks with "
                               "4 s of context (bounded memory, slightly different features); `auto`: whole up "
                               "to 60 s.", "enum": ["auto", "whole", "windowed"], "default": "auto"},
            "head_motion": {"description": "How much the head moves, 0 (still) to 1 (lively): the constant "
                            "head speed given to the speed layers.", "type": "number", "minimum": 0,
                            "maximum": 1, "default": 0.5},
            "dtype": {"description": "auto: bfloat16 on CUDA, float32 on CPU.",
                      "enum": ["auto", "float32", "float16", "bfloat16"], "default": "auto"},
            "device": {"description": "torch device (cpu, cuda, cuda:1); unset: the worker's device.",
                       "type": ["string", "null"], "minLength": 1, "default": None},
        },
    }  # fmt: skip

    # Options that only Hallo weights read, with the values that leave them neutral.
    hallo_options: ClassVar[dict[str, Any]] = {
        "pose_weight": 1.0, "face_weight": 1.0, "lip_weight": 1.0, "face_expand_ratio": 1.2, "audio_features": "auto",
    }  # fmt: skip

    def __init__(self, device: str | None = None) -> None:
        super().__init__(device)
        self._pipelines: dict[tuple[str, str, str], Any] = {}

    @classmethod
    def weights_identity(cls, options: Mapping[str, Any]) -> str:
        return weights_identity(resolve_weights_dir(options.get("weights")))

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[OptionProblem]:
        """clip_frames and motion_frames against each other and against how many frames the
        weights' temporal modules see (`motion_max_seq_length`), as the renderer needs them."""
        from emo_cli.backends.emo.weights import read_index

        config: dict[str, Any] = {}
        index: dict[str, Any] = {}
        try:
            root = resolve_weights_dir(options.get("weights"))
            config = backbone_config(root)
            index = read_index(root)
        except EmoError:
            pass  # no weights folder, or no index: the weights' own checks report that
        chosen_clip = options.get("clip_frames")
        clip = int(index.get("clip_frames") or EMO_CLIP_FRAMES if chosen_clip is None else chosen_clip)
        chosen = options.get("motion_frames")
        motion = int(config.get("motion_frames", DEFAULT_MOTION_FRAMES) if chosen is None else chosen)
        unet = config.get("unet_config") if isinstance(config.get("unet_config"), dict) else {}
        longest = int(unet.get("motion_max_seq_length") or DEFAULT_TEMPORAL_LENGTH)
        problems = []
        if motion > clip:
            where = "motion_frames" if chosen is not None else "clip_frames"
            problems.append(OptionProblem(where, f"settings.emo.motion_frames ({motion}"
                                          f"{'' if chosen is not None else ', the weights own'}) must not exceed "
                                          f"settings.emo.clip_frames ({clip})"))  # fmt: skip
        if clip + motion > longest:
            problems.append(OptionProblem("clip_frames", f"settings.emo.clip_frames + motion_frames is "
                                          f"{clip + motion}, but the temporal modules of these weights see at "
                                          f"most {longest} frames"))  # fmt: skip
        return problems

    def pipeline(self, weights: Path, device: str, dtype: str):
        """The loaded model for (weights, device, dtype), loaded once per worker."""
        key = (str(weights.resolve()), device, dtype)
        if key not in self._pipelines:
            import torch

            from emo_cli.backends.emo.pipeline import EmoPipeline, load_model, resolve_dtype

            try:
                torch_device = torch.device(device)
            except RuntimeError as exc:
                raise BackendError(f"settings.emo.device {device!r} is not a torch device ({exc})") from exc
            if torch_device.type == "cuda" and not torch.cuda.is_available():
                raise BackendError(f"settings.emo.device is {device!r} but this machine has no usable CUDA GPU; "
                                   "use device: cpu or render on a GPU node")  # fmt: skip
            model = load_model(weights, torch_device, resolve_dtype(dtype, torch_device))
            self._pipelines = {key: EmoPipeline(model)}  # one model in memory at a time
        return self._pipelines[key]

    def start_job(self, job: JobInput) -> JobRenderer:
        from emo_cli.backends.emo.renderer import EmoRenderer, HalloRenderer

        options = self.resolve_options(job.options)
        weights = resolve_weights_dir(options["weights"])
        pipeline = self.pipeline(weights, options["device"] or self.device, options["dtype"])
        if pipeline.model.kind == "hallo":
            return HalloRenderer(pipeline, job, options)
        return EmoRenderer(pipeline, job, options)
