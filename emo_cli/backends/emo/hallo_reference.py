"""Hallo reference sets: run our Hallo mode on the inputs Hallo's own code was run on, compare.

A reference set is a folder in the format of the project's shared `hallo-reference/`:
configs.json (module configs and run settings), one safetensors state dict per Hallo module
(keys as Hallo's `state_dict()` gives them) plus the VAE, `inputs*.safetensors`, and the outputs
and intermediates of Hallo's pipeline. Modules are built through the importer's renaming
(`hallo_import`), with sizes from configs.json, so any size the format holds works. Used by
`benchmarks/hallo_parity.py` and the parity tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Max |difference| allowed per stage. Hallo's own 1-vs-2-thread spread on the same build is about
# 9e-5 on per-step UNet outputs, 3e-4 on latents and 1e-4 on the video (determinism.json); ours
# runs another diffusers/torch build with its own op order, so the bounds leave a few times that.
TOLERANCES = {
    "projection": 1e-5,
    "face_locator": 1e-5,
    "bank": 1e-4,
    "unet_output": 1e-3,
    "latents": 1e-3,
    "video": 5e-4,
}
MODULE_FILES = {
    "reference_unet": "reference_unet",
    "denoising_unet": "denoising_unet",
    "face_locator": "face_locator",
    "imageproj": "imageproj",
    "audioproj": "audioproj",
}


def find_reference() -> Path | None:
    """$EMO_HALLO_REFERENCE, else `<repo>/../shared/hallo-reference`, if it exists."""
    env = os.environ.get("EMO_HALLO_REFERENCE")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / ".." / "shared" / "hallo-reference")
    for path in candidates:
        if (path / "configs.json").is_file():
            return path.resolve()
    return None


@dataclass
class ReferenceSet:
    root: Path
    configs: dict[str, Any]
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> ReferenceSet:
        from safetensors.torch import load_file

        root = Path(root)
        configs = json.loads((root / "configs.json").read_text())["configs"]
        states = {name: load_file(root / f"{file}.safetensors") for name, file in MODULE_FILES.items()}
        states["vae"] = load_file(root / "vae.safetensors")
        return cls(root, configs, states)

    def tensors(self, name: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        path = self.root / f"{name}.safetensors"
        return load_file(path) if path.is_file() else {}

    def runs(self) -> list[str]:
        """The run names of configs.json ("run", "run_128", ...), each with its inputs file."""
        found = []
        for key in sorted(self.configs):
            if key == "run" or key.startswith("run_"):
                suffix = key[len("run") :]
                if (self.root / f"inputs{suffix}.safetensors").is_file():
                    found.append(key)
        return found


def build_pipeline(ref: ReferenceSet, overrides: dict[str, Any] | None = None, audio_activation: str | None = None):
    """An `EmoPipeline` in Hallo mode holding the reference set's weights (float32, CPU).

    `overrides` replace backbone config values (the ablations switch Hallo behaviours off this way).
    """
    from diffusers import AutoencoderKL

    from emo_cli.backends.emo.hallo_import import (
        HALLO_SCHEDULER,
        build_modules,
        load_hallo_state,
        small_module_configs,
    )
    from emo_cli.backends.emo.pipeline import EmoModel, EmoPipeline
    from emo_cli.errors import WeightsError

    c = ref.configs
    small = small_module_configs(ref.states, audio_layers=int(c["audioproj"]["blocks"]),
                                 window=int(c["audioproj"]["seq_len"]))  # fmt: skip
    if audio_activation:
        small["audio_proj"]["activation"] = audio_activation
    modules = build_modules(c["unet_base_config"], c["unet_additional_kwargs"], small, overrides)
    problems = load_hallo_state(modules, {k: ref.states[k] for k in MODULE_FILES})
    if problems:
        raise WeightsError(f"{ref.root}: the reference weights do not fit:\n  " + "\n  ".join(problems))
    vae_config = {k: v for k, v in c["vae"].items() if not k.startswith("_")}
    vae = AutoencoderKL.from_config(vae_config)
    vae.load_state_dict(ref.states["vae"], strict=True)
    scheduler = dict(HALLO_SCHEDULER, **c.get("scheduler", {}))
    model = EmoModel(
        reference_unet=modules["reference_unet"], backbone=modules["denoising_unet"],
        face_locator=modules["face_locator"], audio_proj=modules["audioproj"], speed_encoder=None,
        identity_proj=modules["imageproj"], vae=vae, audio_encoder=None, scheduler_config=scheduler, kind="hallo",
    )  # fmt: skip
    for part in model.parts().values():
        part.eval().requires_grad_(False)
    return EmoPipeline(model)


def run_overrides(ref: ReferenceSet, run: str = "run") -> dict[str, Any]:
    """Backbone config values a run of configs.json sets (its motion-frame count)."""
    return {"motion_frames": int(ref.configs[run].get("n_motion_frames", 2))}


def run_reference(pipeline, ref: ReferenceSet, run: str = "run", motion_scale=None,
                  initial_latents=None) -> dict[str, Any]:  # fmt: skip
    """Run one clip of `run` (configs.json) on its inputs; returns the trace of every stage."""
    import torch

    settings = ref.configs[run]
    suffix = run[len("run") :]
    inputs = ref.tensors(f"inputs{suffix}")
    levels = sorted({int(k.rsplit("_", 1)[1]) for k in inputs if k.startswith("full_mask_")})
    masks = {kind: [inputs[f"{kind}_mask_{level}"] for level in levels] for kind in ("full", "face", "lip")}
    trace: dict[str, Any] = {}
    portrait = pipeline.prepare_hallo(
        image=inputs["source_image_pixels"], face_region=inputs["source_image_face_region"],
        identity=inputs["source_image_face_emb"], masks=masks, trace=trace,
    )  # fmt: skip
    if initial_latents is None:
        initial_latents = expected_outputs(ref, run).get("initial_latents")
    generator = torch.Generator("cpu").manual_seed(int(settings.get("latent_generator_seed", 42)))
    clip = pipeline.hallo_clip(
        portrait, inputs["audio_emb_windowed"], None, generator=generator,
        motion_scale=tuple(motion_scale or settings["motion_scale"]), steps=int(settings["num_inference_steps"]),
        guidance_scale=float(settings["guidance_scale"]), eta=float(settings.get("eta", 0.0)),
        initial_latents=initial_latents, trace=trace,
    )  # fmt: skip
    trace["video"] = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None]  # (1, 3, f, H, W)
    return trace


def expected_outputs(ref: ReferenceSet, run: str = "run") -> dict[str, Any]:
    """What Hallo's code produced for `run`: output(_suffix) merged with the intermediates (main run)."""
    suffix = run[len("run") :]
    out = dict(ref.tensors(f"output{suffix}"))
    if not suffix:
        out.update(ref.tensors("intermediates"))
    return out


def stage_of(name: str) -> str | None:
    if name.startswith("imageproj_out") or name == "audioproj_out":
        return "projection"
    if name == "face_locator_out":
        return "face_locator"
    if name.startswith("ref_bank."):
        return "bank"
    if name.endswith(".unet_output"):
        return "unet_output"
    if name.endswith(".latents_after") or name in ("final_latents", "initial_latents"):
        return "latents"
    if name in ("video", "vae_decoded_raw"):
        return "video"
    return None


@dataclass(frozen=True)
class StageResult:
    name: str
    stage: str
    max_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def compare(trace: dict[str, Any], expected: dict[str, Any], tolerances: dict[str, float] | None = None,
            video_key: str = "video") -> list[StageResult]:  # fmt: skip
    """Max |ours - Hallo's| for every stage both have, in pipeline order."""
    tol = dict(TOLERANCES, **(tolerances or {}))
    results = []
    for name, value in trace.items():
        key = video_key if name == "video" else name
        stage = stage_of(name)
        if stage is None or key not in expected:
            continue
        theirs = expected[key].float()
        ours = value.detach().float().cpu()
        if name == "face_locator_out" and ours.dim() == 4:  # ours once for all frames, Hallo's per frame
            ours = ours[:, :, None].expand_as(theirs)
        ours = ours.reshape(theirs.shape)
        diff = (ours - theirs).abs().max().item()
        results.append(StageResult(name, stage, diff, tol[stage]))
    return results
