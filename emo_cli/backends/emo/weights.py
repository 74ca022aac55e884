"""EMO weights on disk: one folder per part plus an index, `emo_weights.json`.

    weights/
      emo_weights.json        parts, their files with sha256 and size, the content hash
      reference_unet/         diffusers UNet2DConditionModel     (config.json + safetensors)
      denoising_unet/         EmoBackbone (UNetMotionModel + EMO layers)
      face_locator/ audio_proj/ speed_encoder/                   (EMO's own modules)
      vae/                    diffusers AutoencoderKL
      audio_encoder/          transformers Wav2Vec2Model
      scheduler/              diffusers DDIMScheduler config

A Hallo/Hallo2 folder (`emo weights import-hallo`, index "model": "hallo") has no speed_encoder
but an image_proj/ (the identity projection) and the ONNX models its preprocessing runs:
face_analysis/models/*.onnx (InsightFace detector + ArcFace) and audio_separator/*.onnx (vocal
separation), copied from Hallo's download so a render needs only this folder.

The index's `content_sha256` (a hash of every file's sha256, recorded when the folder was
written) is the weights identity in every job id; `emo weights info` re-hashes the files to
verify it. Reading the index needs no torch, so `emo plan` stays light. `init_weights`
assembles a start-point model from the public components and writes it atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo_cli.errors import WeightsError
from emo_cli.fsutil import sha256_file

INDEX = "emo_weights.json"
FORMAT = "emo-cli-weights"
FORMAT_VERSION = 1

# part -> (class, where a real model's copy of it comes from)
PARTS: dict[str, tuple[str, str]] = {
    "reference_unet": ("diffusers.UNet2DConditionModel",
                       "the Stable Diffusion 1.5 UNet (stable-diffusion-v1-5/stable-diffusion-v1-5, unet/)"),
    "denoising_unet": ("emo_cli.backends.emo.modules.EmoBackbone",
                       "the SD1.5 UNet + the AnimateDiff motion adapter (guoyww/animatediff-motion-adapter-v1-5-2)"),
    "face_locator": ("emo_cli.backends.emo.modules.FaceLocator", "created by `emo weights init`"),
    "audio_proj": ("emo_cli.backends.emo.modules.AudioProjection", "created by `emo weights init`"),
    "speed_encoder": ("emo_cli.backends.emo.modules.SpeedEncoder", "created by `emo weights init`"),
    "vae": ("diffusers.AutoencoderKL", "sd-vae-ft-mse (stabilityai/sd-vae-ft-mse)"),
    "audio_encoder": ("transformers.Wav2Vec2Model", "wav2vec 2.0 base (facebook/wav2vec2-base-960h)"),
    "scheduler": ("diffusers.DDIMScheduler", "the Stable Diffusion 1.5 scheduler config (scheduler/)"),
    "image_proj": ("emo_cli.backends.emo.modules.IdentityProjection", "Hallo's net.pth (imageproj.)"),
    "face_analysis": ("onnx", "Hallo's download (face_analysis/models/)"),
    "audio_separator": ("onnx", "Hallo's download (audio_separator/Kim_Vocal_2.onnx)"),
}  # fmt: skip

# The parts each kind of model needs ("model" in the index).
MODEL_PARTS: dict[str, tuple[str, ...]] = {
    "emo": ("reference_unet", "denoising_unet", "face_locator", "audio_proj", "speed_encoder", "vae",
            "audio_encoder", "scheduler"),
    "hallo": ("reference_unet", "denoising_unet", "face_locator", "audio_proj", "image_proj", "vae",
              "audio_encoder", "scheduler", "face_analysis", "audio_separator"),
}  # fmt: skip

ASSEMBLE_HINT = (
    "assemble one with `emo weights init --sd15 DIR --vae DIR --motion-adapter DIR --wav2vec DIR --out DIR` "
    "from local copies of stable-diffusion-v1-5, sd-vae-ft-mse, animatediff-motion-adapter-v1-5-2 and "
    "wav2vec2-base-960h"
)


def resolve_weights_dir(value: str | os.PathLike | None) -> Path:
    """The weights folder an `emo:` options section selects (`weights:`, else $EMO_WEIGHTS)."""
    value = value or os.environ.get("EMO_WEIGHTS")
    if not value:
        raise WeightsError(f"settings.emo.weights is not set (nor EMO_WEIGHTS): point it at an EMO weights folder; "
                           f"{ASSEMBLE_HINT}")  # fmt: skip
    return Path(value).expanduser()


def read_index(root: Path | str) -> dict[str, Any]:
    """The parsed index of a weights folder. No torch, no hashing."""
    root = Path(root)
    index_path = root / INDEX
    if not root.is_dir():
        raise WeightsError(f"EMO weights folder {root} does not exist; {ASSEMBLE_HINT}")
    if not index_path.is_file():
        raise WeightsError(f"{root} is not an EMO weights folder: {INDEX} is missing; {ASSEMBLE_HINT}")
    try:
        index = json.loads(index_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{index_path} cannot be read as JSON ({exc}); re-run `emo weights init`") from exc
    if (
        not isinstance(index, dict)
        or index.get("format") != FORMAT
        or not isinstance(index.get("parts"), dict)
    ):
        raise WeightsError(f"{index_path} is not an emo-cli weights index (format {FORMAT!r} expected)")
    if index.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{index_path}: format_version {index.get('format_version')!r} is not supported "
                           f"(this emo-cli reads {FORMAT_VERSION})")  # fmt: skip
    if not isinstance(index.get("content_sha256"), str):
        raise WeightsError(f"{index_path}: content_sha256 is missing; re-run `emo weights init`")
    return index


def check_weights(root: Path | str) -> dict[str, Any]:
    """The index, after checking every part's folder and files exist with the recorded sizes.

    Raises:
        WeightsError: naming every missing part or file and where a real copy of it comes from.
    """
    root = Path(root)
    index = read_index(root)
    problems = []
    kind = index.get("model", "emo")
    if kind not in MODEL_PARTS:
        raise WeightsError(f"{root / INDEX}: model {kind!r} is not one this emo-cli renders "
                           f"({', '.join(MODEL_PARTS)})")  # fmt: skip
    for part in MODEL_PARTS[kind]:
        cls, source = PARTS[part]
        entry = index["parts"].get(part)
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            problems.append(f"part {part!r} ({cls}) is not listed in {INDEX}; it comes from {source}")
            continue
        folder = root / part
        if not folder.is_dir():
            problems.append(f"part {part!r}: folder {folder} is missing; it comes from {source}")
            continue
        for name, meta in entry["files"].items():
            path = folder / name
            if not path.is_file():
                problems.append(f"part {part!r}: file {path} is missing; it comes from {source}")
            elif path.stat().st_size != meta.get("bytes"):
                problems.append(f"part {part!r}: file {path} has {path.stat().st_size} bytes, the index says "
                                f"{meta.get('bytes')} (truncated or replaced)")  # fmt: skip
    if problems:
        raise WeightsError(f"EMO weights folder {root} is incomplete:\n  " + "\n  ".join(problems)
                           + f"\n{ASSEMBLE_HINT[0].upper()}{ASSEMBLE_HINT[1:]}")  # fmt: skip
    return index


def weights_identity(root: Path | str) -> str:
    """The identity every job id carries: the content hash recorded in the index."""
    return "emo-weights:sha256:" + check_weights(root)["content_sha256"]


def content_hash(parts: dict[str, dict[str, Any]]) -> str:
    """sha256 over every part's files and their sha256, in a fixed order."""
    listing = {part: {name: meta["sha256"] for name, meta in sorted(entry["files"].items())}
               for part, entry in sorted(parts.items())}  # fmt: skip
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PartInfo:
    name: str
    cls: str
    parameters: int
    dtypes: tuple[str, ...]
    bytes: int
    files: int


@dataclass(frozen=True)
class WeightsInfo:
    root: Path
    parts: tuple[PartInfo, ...]
    content_sha256: str
    identity: str
    verified: bool  # every file re-hashed and matching the index
    mismatches: tuple[str, ...]


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes). No torch."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > 100_000_000:
            raise WeightsError(f"{path} is not a safetensors file (header of {size} bytes)")
        return json.loads(fh.read(size))


def weights_info(root: Path | str, verify: bool = True) -> WeightsInfo:
    """Parts, parameter counts and dtypes (from the safetensors headers) and the content hash.

    With `verify`, every file is hashed again and compared with the index.
    """
    root = Path(root)
    index = check_weights(root)
    parts, mismatches = [], []
    for part, entry in index["parts"].items():
        params, dtypes, size = 0, set(), 0
        for name, meta in entry["files"].items():
            path = root / part / name
            size += path.stat().st_size
            if name.endswith(".safetensors"):
                for key, tensor in safetensors_header(path).items():
                    if key != "__metadata__":
                        count = 1
                        for dim in tensor["shape"]:
                            count *= dim
                        params += count
                        dtypes.add(tensor["dtype"])
            if verify and sha256_file(path) != meta["sha256"]:
                mismatches.append(f"{path}: sha256 differs from the index")
        parts.append(PartInfo(part, entry.get("class", PARTS.get(part, ("?",))[0]), params, tuple(sorted(dtypes)),
                              size, len(entry["files"])))  # fmt: skip
    recorded = index["content_sha256"]
    if verify and content_hash(index["parts"]) != recorded:
        mismatches.append(f"{root / INDEX}: content_sha256 does not match the files listed")
    return WeightsInfo(root, tuple(parts), recorded, "emo-weights:sha256:" + recorded, verify and not mismatches,
                       tuple(mismatches))  # fmt: skip


def write_index(root: Path, sources: dict[str, str], extra: dict[str, Any] | None = None,
                model: str = "emo") -> dict[str, Any]:  # fmt: skip
    """Hash every file under each part folder of `root` and write the index there."""
    from emo_cli import __version__

    parts: dict[str, Any] = {}
    for part in MODEL_PARTS[model]:
        cls = PARTS[part][0]
        folder = root / part
        files = {
            str(path.relative_to(folder)): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in sorted(folder.rglob("*")) if path.is_file()
        }  # fmt: skip
        parts[part] = {"class": cls, "subfolder": part, "files": files}
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "created_by": f"emo-cli {__version__}",
        "sources": sources,
        **(extra or {}),
        "parts": parts,
        "content_sha256": content_hash(parts),
    }
    (root / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return index


@contextlib.contextmanager
def atomic_dir(final: Path, overwrite: bool = False):
    """Yield a temporary folder beside `final`; on success rename it into place.

    An existing `final` is only replaced with `overwrite`, and then only once the new folder is
    whole (it is renamed aside, the new one renamed in, the old one removed).
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise WeightsError(f"{final} already exists; choose another --out or pass --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.parent / f".{final.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
