"""Hallo / Hallo2 checkpoints as emo weights: configs, key renaming and the import itself.

Hallo's `net.pth` is one flat state dict of five modules (prefixes `reference_unet.`,
`denoising_unet.`, `face_locator.`, `imageproj.`, `audioproj.`). Its UNets are SD1.5 layouts
(the denoising one with AnimateDiff temporal modules and Hallo's audio modules), so they map
onto diffusers' `UNet2DConditionModel` and our `EmoBackbone` (a `UNetMotionModel`) by renaming
a few key segments; the Hallo behaviours that differ from diffusers are config values of the
backbone (`hallo_backbone_kwargs`). Architecture sizes come from SD1.5's `unet/config.json`
and from Hallo's `configs/inference/default.yaml` (`HALLO_UNET_KWARGS`, `HALLO_SCHEDULER`),
which the download does not contain; the small modules' sizes are read off the tensor shapes.

Paths are checked before torch is imported; every missing file, missing key, unexpected key
and wrong shape is reported at once, by name, as a `WeightsError`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from emo_cli.errors import WeightsError

VARIANTS = ("hallo", "hallo2")
NET_PREFIXES = ("reference_unet", "denoising_unet", "face_locator", "imageproj", "audioproj")

# Hallo's configs/inference/default.yaml (commit 8fd7c57): `unet_additional_kwargs`.
HALLO_UNET_KWARGS: dict[str, Any] = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "use_audio_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
        "temporal_attention_dim_div": 1,
    },
    "audio_attention_dim": 768,
    "stack_enable_blocks_name": ["up", "down", "mid"],
    "stack_enable_blocks_depth": [0, 1, 2, 3],
}
# default.yaml's noise_scheduler_kwargs (its later switch to scaled_linear has no effect in Hallo).
HALLO_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}
HALLO_CLIP_FRAMES = 16  # default.yaml data.n_sample_frames
HALLO2_MOTION_PATCH_DROP = 0.25  # Hallo2's configs/inference/long.yaml: use_mask true, mask_rate 0.25
HALLO_MOTION_FRAMES = 2  # default.yaml data.n_motion_frames
TEMPORAL_NORM_GROUPS = 32  # Hallo's TemporalTransformer3DModel never passes its group count


# -- configs -------------------------------------------------------------------------------------------
def motion_unet_config(unet2d: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The `UNetMotionModel` config of Hallo's denoising UNet, from SD1.5's unet config."""
    mm = kwargs["motion_module_kwargs"]
    unsupported = []
    if kwargs.get("motion_module_type", "Vanilla") != "Vanilla":
        unsupported.append(f"motion_module_type {kwargs['motion_module_type']!r}")
    if list(mm.get("attention_block_types", [])) != ["Temporal_Self", "Temporal_Self"]:
        unsupported.append(f"attention_block_types {mm.get('attention_block_types')!r}")
    if mm.get("temporal_attention_dim_div", 1) != 1 or not mm.get("temporal_position_encoding", True):
        unsupported.append("temporal_attention_dim_div != 1 or no temporal position encoding")
    if kwargs.get("motion_module_decoder_only") or not kwargs.get("use_motion_module", True):
        unsupported.append("motion modules off or decoder-only")
    if not kwargs.get("motion_module_mid_block", True) or not kwargs.get("use_audio_module", True):
        unsupported.append("no mid-block motion module or no audio modules")
    levels = len(unet2d["block_out_channels"])
    if sorted(kwargs.get("motion_module_resolutions", [])) != [2**i for i in range(levels)]:
        unsupported.append(f"motion_module_resolutions {kwargs.get('motion_module_resolutions')!r}")
    enabled = set(kwargs.get("stack_enable_blocks_name") or ())
    depths = set(kwargs.get("stack_enable_blocks_depth") or ())
    if enabled != {"up", "down", "mid"} or not set(range(levels)) <= depths:
        unsupported.append("audio modules without the three region attentions in some blocks")
    if unsupported:
        raise WeightsError("this Hallo configuration is not supported: " + "; ".join(unsupported))
    down = ["CrossAttnDownBlockMotion" if "CrossAttn" in t else "DownBlockMotion" for t in unet2d["down_block_types"]]
    up = ["CrossAttnUpBlockMotion" if "CrossAttn" in t else "UpBlockMotion" for t in unet2d["up_block_types"]]
    heads = unet2d.get("num_attention_heads") or unet2d["attention_head_dim"]  # SD1.5 names heads "head_dim"
    return {
        "sample_size": unet2d.get("sample_size"),
        "in_channels": unet2d.get("in_channels", 4),
        "out_channels": unet2d.get("out_channels", 4),
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": list(unet2d["block_out_channels"]),
        "layers_per_block": unet2d["layers_per_block"],
        "downsample_padding": unet2d.get("downsample_padding", 1),
        "mid_block_scale_factor": unet2d.get("mid_block_scale_factor", 1),
        "act_fn": unet2d.get("act_fn", "silu"),
        "norm_num_groups": unet2d["norm_num_groups"],
        "norm_eps": unet2d.get("norm_eps", 1e-5),
        "cross_attention_dim": unet2d["cross_attention_dim"],
        "use_linear_projection": bool(unet2d.get("use_linear_projection", False)),
        "num_attention_heads": heads,
        "motion_max_seq_length": mm["temporal_position_encoding_max_len"],
        "motion_num_attention_heads": mm["num_attention_heads"],
        "temporal_transformer_layers_per_block": mm["num_transformer_block"],
        "temporal_transformer_layers_per_mid_block": mm["num_transformer_block"],
        "use_motion_mid_block": True,
    }


def hallo_backbone_kwargs(unet2d: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """`EmoBackbone` config values that make it compute what Hallo's UNet3DConditionModel does
    in Hallo's inference (the training-mode, checkpointed branch its pipeline takes)."""
    return {
        "unet_config": motion_unet_config(unet2d, kwargs),
        "audio_context_dim": kwargs["audio_attention_dim"],
        "motion_frames": HALLO_MOTION_FRAMES,
        "first_clip_motion": "reference",
        "face_locator_target": "conv_in",
        "cross_attention_context": "identity",
        "audio_attention_regions": 3,
        "speed_layers": False,
        "unconditional_audio": "zero_tokens",
        "temporal_norm": "per_frame",
        "temporal_norm_groups": TEMPORAL_NORM_GROUPS,
        "plain_block_temporal": False,
        "motion_features": "reference_tokens",
        "unconditional_context": "projected_zeros",
        "reference_context": "cfg_tiled",
        "reference_rows": "alternating",
        "reference_bank_dtype": "float16",
    }


def reference_unet_config(unet2d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in unet2d.items() if not k.startswith("_")}


def small_module_configs(net: dict[str, Any], audio_layers: int | None = None,
                         window: int = 5) -> dict[str, dict[str, Any]]:  # fmt: skip
    """face_locator / audio_proj / image_proj configs read off the tensor shapes in `net`
    (keys without their module prefix, grouped per module)."""
    problems = []

    def shape(module: str, key: str) -> tuple[int, ...]:
        tensor = net.get(module, {}).get(key)
        if tensor is None:
            problems.append(f"{module}.{key}")
            return (0, 0, 0, 0)
        return tuple(tensor.shape)

    image = shape("imageproj", "proj.weight")
    context_dim = shape("imageproj", "norm.weight")[0]
    proj1 = shape("audioproj", "proj1.weight")
    proj3 = shape("audioproj", "proj3.weight")
    out_dim = shape("audioproj", "norm.weight")[0]
    face_in = shape("face_locator", "conv_in.weight")
    blocks = sorted({int(m.group(1)) for k in net.get("face_locator", {}) if (m := re.match(r"blocks\.(\d+)\.", k))})
    channels = [face_in[0]] + [shape("face_locator", f"blocks.{i}.weight")[0] for i in blocks[1::2]]
    face_out = shape("face_locator", "conv_out.weight")
    if problems:
        raise WeightsError("net.pth lacks the keys its module sizes are read from: " + ", ".join(problems))
    layers = audio_layers or 12
    feature_dim = proj1[1] // (window * layers)
    return {
        "face_locator": {"in_channels": face_in[1], "block_out_channels": channels, "out_channels": face_out[0]},
        "audio_proj": {"window": window, "layers": layers, "feature_dim": feature_dim, "hidden_dim": proj1[0],
                       "tokens": proj3[0] // out_dim, "context_dim": out_dim, "activation": "relu"},
        "image_proj": {"embedding_dim": image[1], "tokens": image[0] // context_dim, "context_dim": context_dim},
    }  # fmt: skip


# -- key renaming ------------------------------------------------------------------------------------------
_MOTION = re.compile(r"^(.*\.motion_modules\.\d+)\.temporal_transformer\.(.*)$")
_AUDIO = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.audio_modules\.(\d+)\.(.*)$")
_MOTION_INNER = {
    "attention_blocks.0.": "attn1.",
    "attention_blocks.1.": "attn2.",
    "norms.0.": "norm1.",
    "norms.1.": "norm2.",
    "ff_norm.": "norm3.",
    "ff.": "ff.",
}


def rename_denoising_unet(key: str) -> str | None:
    """A Hallo denoising-UNet key -> the `EmoBackbone` key, or None for a key with no parameter
    (the temporal position encodings, recomputed by diffusers from the same formula)."""
    if m := _AUDIO.match(key):
        block, index, rest = m.groups()
        return f"region_audio.{block.replace('.', '__')}__attentions__{index}.{rest}"
    if m := _MOTION.match(key):
        module, rest = m.groups()
        if re.match(r"transformer_blocks\.\d+\.attention_blocks\.\d+\.pos_encoder\.pe$", rest):
            return None
        if tb := re.match(r"(transformer_blocks\.\d+\.)(.*)$", rest):
            head, inner = tb.groups()
            for old, new in _MOTION_INNER.items():
                if inner.startswith(old):
                    return f"unet.{module}.{head}{new}{inner[len(old):]}"
        return f"unet.{module}.{rest}"
    return f"unet.{key}"


def rename_face_locator(key: str) -> str:
    if key.startswith("conv_in."):
        return "encoder.0." + key[len("conv_in.") :]
    if m := re.match(r"blocks\.(\d+)\.(.*)$", key):
        return f"encoder.{2 + 2 * int(m.group(1))}.{m.group(2)}"
    return key


def rename_audio_proj(key: str) -> str:
    for old, new in (("proj1.", "proj.0."), ("proj2.", "proj.2."), ("proj3.", "proj.4.")):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


RENAMES = {
    "reference_unet": lambda key: key,
    "denoising_unet": rename_denoising_unet,
    "face_locator": rename_face_locator,
    "audioproj": rename_audio_proj,
    "imageproj": lambda key: key,
}
# Parameters diffusers' UNet2DConditionModel has and Hallo's ReferenceNet never creates: its output
# layers, which never run (the ReferenceNet pass stops after the last bank entry). Zeros on import.
REFERENCE_OUTPUT_LAYERS = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")


def build_modules(unet2d: dict[str, Any], kwargs: dict[str, Any], small: dict[str, dict[str, Any]],
                  overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Our modules for a Hallo checkpoint, uninitialised (to be loaded with `load_hallo_state`)."""
    from diffusers import UNet2DConditionModel

    from emo_cli.backends.emo.modules import AudioProjection, EmoBackbone, FaceLocator, IdentityProjection

    backbone_kwargs = hallo_backbone_kwargs(unet2d, kwargs)
    backbone_kwargs.update(overrides or {})
    return {
        "reference_unet": UNet2DConditionModel.from_config(reference_unet_config(unet2d)),
        "denoising_unet": EmoBackbone(**backbone_kwargs),
        "face_locator": FaceLocator(**small["face_locator"]),
        "imageproj": IdentityProjection(**small["image_proj"]),
        "audioproj": AudioProjection(**small["audio_proj"]),
    }


def convert_state(part: str, state: dict[str, Any], module) -> tuple[dict[str, Any], list[str]]:
    """`state` (Hallo's keys of one module, prefix removed) renamed for `module`; problems listed:
    missing keys, keys with no place, wrong shapes (each by its Hallo name)."""
    import torch

    rename = RENAMES[part]
    target = module.state_dict()
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, tensor in state.items():
        new = rename(key)
        if new is None:
            continue
        if new not in target:
            problems.append(f"{part}.{key}: unexpected key (no parameter {new} in the emo module)")
        elif tuple(tensor.shape) != tuple(target[new].shape):
            problems.append(f"{part}.{key}: shape {tuple(tensor.shape)}, expected {tuple(target[new].shape)}")
        else:
            out[new] = tensor
    if part == "reference_unet":
        for key in REFERENCE_OUTPUT_LAYERS:
            if key in target and key not in out:
                out[key] = torch.zeros_like(target[key])
    mapped = {rename(key) for key in state}
    for key, tensor in target.items():
        if key in out or key in mapped:  # loaded, or its Hallo key is already reported
            continue
        if key.endswith("pos_embed.pe"):
            out[key] = tensor  # the sinusoidal table diffusers computes, the formula of Hallo's pos_encoder.pe
        else:
            problems.append(f"{part}.{hallo_name(part, key)}: missing")
    return out, problems


def hallo_name(part: str, key: str) -> str:
    """The Hallo key an emo key is loaded from (the inverse of RENAMES), for error messages."""
    if part == "denoising_unet":
        if m := re.match(r"region_audio\.(.+?)__attentions__(\d+)\.(.*)$", key):
            return f"{m.group(1).replace('__', '.')}.audio_modules.{m.group(2)}.{m.group(3)}"
        key = key.removeprefix("unet.")
        if m := re.match(r"(.*\.motion_modules\.\d+)\.(transformer_blocks\.\d+\.)?(.*)$", key):
            module, head, rest = m.groups()
            if head:
                for old, new in _MOTION_INNER.items():
                    if rest.startswith(new):
                        rest = old + rest[len(new) :]
                        break
            return f"{module}.temporal_transformer.{head or ''}{rest}"
        return key
    if part == "face_locator" and (m := re.match(r"encoder\.(\d+)\.(.*)$", key)):
        index = int(m.group(1))
        return f"conv_in.{m.group(2)}" if index == 0 else f"blocks.{(index - 2) // 2}.{m.group(2)}"
    if part == "audioproj" and (m := re.match(r"proj\.(\d+)\.(.*)$", key)):
        return f"proj{int(m.group(1)) // 2 + 1}.{m.group(2)}"
    return key


def load_hallo_state(modules: dict[str, Any], net: dict[str, dict[str, Any]]) -> list[str]:
    """Load every module of `modules` from `net` (module -> Hallo state dict); all problems, or []."""
    problems: list[str] = []
    converted = {}
    for part, module in modules.items():
        if part not in net:
            problems.append(f"{part}: no keys with prefix {part}. in net.pth")
            continue
        converted[part], found = convert_state(part, net[part], module)
        problems += found
    if problems:
        return problems
    for part, module in modules.items():
        module.load_state_dict(converted[part], strict=True)
    return []


def split_net(flat: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """net.pth's flat state dict -> per module (prefix removed); keys of no module are listed."""
    net: dict[str, dict[str, Any]] = {prefix: {} for prefix in NET_PREFIXES}
    stray = []
    for key, value in flat.items():
        prefix, _, rest = key.partition(".")
        if prefix in net and rest:
            net[prefix][rest] = value
        else:
            stray.append(key)
    return {k: v for k, v in net.items() if v}, stray


# -- the import ---------------------------------------------------------------------------------------------
def hallo_layout(root: Path, variant: str) -> dict[str, Path]:
    """Where each file of Hallo's download lies (its README's `pretrained_models/` tree)."""
    return {
        "net": root / variant / "net.pth",
        "unet_config": root / "stable-diffusion-v1-5" / "unet" / "config.json",
        "vae": root / "sd-vae-ft-mse",
        "wav2vec": root / "wav2vec" / "wav2vec2-base-960h",
        "face_analysis": root / "face_analysis" / "models",
        "audio_separator": root / "audio_separator" / "Kim_Vocal_2.onnx",
    }


def check_layout(root: Path, variant: str) -> dict[str, Path]:
    """The download's paths, after checking every one exists (all missing ones in one error)."""
    if variant not in VARIANTS:
        raise WeightsError(f"--variant {variant!r}: must be one of {', '.join(VARIANTS)}")
    if not root.is_dir():
        raise WeightsError(f"{root}: no such folder; download Hallo's weights with "
                           "`hf download fudan-generative-ai/hallo --local-dir pretrained_models`")  # fmt: skip
    paths = hallo_layout(root, variant)
    missing = []
    for name, path in paths.items():
        if name in ("vae", "wav2vec"):
            if not (path / "config.json").is_file():
                missing.append(f"{path}/config.json")
            if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
                missing.append(f"{path}/ (no .safetensors or .bin weights)")
        elif name == "face_analysis":
            if not path.is_dir() or not any(path.glob("*.onnx")):
                missing.append(f"{path}/*.onnx (InsightFace's detector and ArcFace models)")
        elif not path.is_file():
            missing.append(str(path))
    if missing:
        raise WeightsError(f"{root} is not a complete Hallo download ({variant}); missing:\n  " + "\n  ".join(missing)
                           + "\nDownload it with `hf download fudan-generative-ai/hallo --local-dir pretrained_models` "
                           "(Hallo2: fudan-generative-ai/hallo2)")  # fmt: skip
    return paths


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def read_hallo_config(path: str | Path) -> dict[str, Any]:
    """Hallo's own inference YAML (configs/inference/*.yaml): the values the import takes from it.

    Only needed for a checkpoint trained with other settings than Hallo's default.yaml.
    """
    import yaml

    path = Path(path).expanduser()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsError(f"--hallo-config {path}: cannot be read as YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("unet_additional_kwargs"), dict):
        raise WeightsError(f"--hallo-config {path}: no unet_additional_kwargs mapping (is it Hallo's inference config?)")
    data = doc.get("data") or {}
    drop = float(doc["mask_rate"]) if doc.get("use_mask") else None  # Hallo2's patch-drop
    return {
        "motion_patch_drop": drop,
        "unet_additional_kwargs": doc["unet_additional_kwargs"],
        "noise_scheduler_kwargs": doc.get("noise_scheduler_kwargs") or {},
        "clip_frames": int(data.get("n_sample_frames", HALLO_CLIP_FRAMES)),
        "motion_frames": int(data.get("n_motion_frames", HALLO_MOTION_FRAMES)),
    }


def import_hallo(pretrained_dir: str | Path, out: str | Path, variant: str = "hallo", overwrite: bool = False,
                 hallo_config: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Import Hallo's or Hallo2's download into an emo weights folder at `out` (atomically).

    Checks the layout, loads net.pth with `weights_only=True`, renames and shape-checks every
    key, writes one folder per part (configs selecting the Hallo behaviours, Hallo's scheduler),
    copies (hard-links where possible) the ONNX face-analysis and vocal-separation models, writes
    the content-hash index, then strict-loads the written folder with `load_model`. Returns the index.

    `hallo_config`: Hallo's inference YAML, for a checkpoint not made with its default.yaml.
    """
    from emo_cli.backends.emo.weights import atomic_dir, write_index

    root = Path(pretrained_dir).expanduser()
    paths = check_layout(root, variant)
    settings = {"unet_additional_kwargs": HALLO_UNET_KWARGS, "noise_scheduler_kwargs": HALLO_SCHEDULER,
                "clip_frames": HALLO_CLIP_FRAMES, "motion_frames": HALLO_MOTION_FRAMES}  # fmt: skip
    if hallo_config is not None:
        settings = read_hallo_config(hallo_config)
    elif variant == "hallo2":
        settings["motion_patch_drop"] = HALLO2_MOTION_PATCH_DROP
    try:
        unet2d = json.loads(paths["unet_config"].read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{paths['unet_config']} cannot be read as JSON ({exc})") from exc

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    try:
        flat = torch.load(paths["net"], map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a broken or foreign file
        raise WeightsError(f"{paths['net']} cannot be loaded as a plain state dict ({exc})") from exc
    if not isinstance(flat, dict):
        raise WeightsError(f"{paths['net']} is not a state dict (got {type(flat).__name__})")
    net, stray = split_net(flat)
    problems = [f"{key}: a key of no Hallo module" for key in stray]
    missing_modules = [p for p in NET_PREFIXES if p not in net]
    problems += [f"{p}: no keys with prefix {p}. in net.pth" for p in missing_modules]
    if missing_modules:
        raise WeightsError(f"{paths['net']} does not fit Hallo's model:\n  " + "\n  ".join(problems))
    wav_config = Wav2Vec2Config.from_pretrained(paths["wav2vec"])
    small = small_module_configs(net, audio_layers=int(wav_config.num_hidden_layers))
    kwargs = dict(HALLO_UNET_KWARGS, **settings["unet_additional_kwargs"])
    modules = build_modules(unet2d, kwargs, small, {"motion_frames": settings["motion_frames"],
                                                    "motion_patch_drop": settings.get("motion_patch_drop")})
    problems += load_hallo_state(modules, net)
    if problems:
        raise WeightsError(f"{paths['net']} does not fit Hallo's model ({len(problems)} problems):\n  "
                           + "\n  ".join(problems))  # fmt: skip
    vae = AutoencoderKL.from_pretrained(paths["vae"])
    audio_encoder = Wav2Vec2Model.from_pretrained(paths["wav2vec"])
    scheduler = DDIMScheduler(**dict(HALLO_SCHEDULER, **settings["noise_scheduler_kwargs"]))

    out = Path(out).expanduser()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        modules["reference_unet"].save_pretrained(tmp / "reference_unet", safe_serialization=True)
        modules["denoising_unet"].save_pretrained(tmp / "denoising_unet", safe_serialization=True)
        modules["face_locator"].save_pretrained(tmp / "face_locator", safe_serialization=True)
        modules["audioproj"].save_pretrained(tmp / "audio_proj", safe_serialization=True)
        modules["imageproj"].save_pretrained(tmp / "image_proj", safe_serialization=True)
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        audio_encoder.save_pretrained(tmp / "audio_encoder", safe_serialization=True)
        pre = paths["wav2vec"] / "preprocessor_config.json"
        if pre.is_file():
            shutil.copyfile(pre, tmp / "audio_encoder" / "preprocessor_config.json")
        scheduler.save_pretrained(tmp / "scheduler")
        for onnx in sorted(paths["face_analysis"].glob("*.onnx")):
            _link_or_copy(onnx, tmp / "face_analysis" / "models" / onnx.name)
        _link_or_copy(paths["audio_separator"], tmp / "audio_separator" / paths["audio_separator"].name)
        sources = {"hallo": str(root), "variant": variant}
        extra = {"dtype": "float32", "trained": True, "clip_frames": settings["clip_frames"],
                 "motion_frames": settings["motion_frames"], "variant": variant}  # fmt: skip
        index = write_index(tmp, sources, extra=extra, model="hallo")
        from emo_cli.backends.emo.pipeline import load_model

        load_model(tmp)  # every part strict-loads from what was written
    return index
