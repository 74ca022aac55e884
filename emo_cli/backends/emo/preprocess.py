"""Everything a Hallo-weights job needs from its portrait and audio, computed once per job, offline.

Hallo's `ImageProcessor` and `AudioProcessor` in one place, from the files its download ships
(copied into the weights folder by `emo weights import-hallo`):

    weights/face_analysis/models/*.onnx       InsightFace detector + ArcFace (identity.py)
    weights/audio_separator/Kim_Vocal_2.onnx  MDX-Net vocal separator (separation.py), optional

and the face mesh bundled in mediapipe for the face-region image and masks (regions.py).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.backends.emo.regions import FACE_EXPAND_RATIO, HalloRegions, hallo_regions
from emo_cli.errors import WeightsError

log = logging.getLogger(__name__)

FACE_MODELS = "face_analysis"


@dataclass(frozen=True)
class PreparedPortrait:
    """The portrait as Hallo's ImageProcessor returns it, for a square render of `image`'s size."""

    image: np.ndarray  # (R, R, 3) uint8: the reference image (Hallo normalises it to [-1, 1])
    identity: np.ndarray  # (512,) float32: ArcFace's raw embedding, zeros when no face is found
    regions: HalloRegions  # face-region image and the full/face/lip masks at four levels


def face_models_dir(weights: Path | str) -> Path:
    """Where a weights folder keeps InsightFace's ONNX files (Hallo's `face_analysis/models/`)."""
    root = Path(weights) / FACE_MODELS
    for candidate in (root / "models", root):
        if candidate.is_dir() and any(candidate.glob("*.onnx")):
            return candidate
    raise WeightsError(f"{root}/models/ with InsightFace's .onnx face models is missing from {weights}; Hallo "
                       "weights need them for the identity embedding: re-run `emo weights import-hallo` on a "
                       "complete download (pretrained_models/face_analysis/models/)")  # fmt: skip


@functools.lru_cache(maxsize=2)
def _face_analysis(models_dir: str):
    from emo_cli.backends.emo.identity import FaceAnalysis

    return FaceAnalysis(models_dir)  # load once per worker: the ArcFace model is 250 MB


@functools.lru_cache(maxsize=2)
def _separator(path: str):
    from emo_cli.backends.emo.separation import VocalSeparator

    return VocalSeparator(path)


def square_portrait(path: Path | str) -> np.ndarray:
    """The portrait centre-cropped to a square at its own resolution (RGB uint8)."""
    from emo_cli.media.image import load_portrait

    rgb = load_portrait(path)
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(rgb[top : top + side, left : left + side])


def prepare_portrait(
    path: Path | str, resolution: int, weights: Path | str, face_expand_ratio: float = FACE_EXPAND_RATIO
) -> PreparedPortrait:
    """Hallo's image preprocessing of a portrait for a `resolution` x `resolution` render.

    The identity embedding and the masks are computed on the square crop at full resolution
    (as Hallo computes them on its input image); the reference image is that crop resized
    bilinearly, as Hallo's torchvision transform does.
    """
    from PIL import Image

    square = square_portrait(path)
    analysis = _face_analysis(str(face_models_dir(weights)))
    identity, _ = analysis.identity(square)
    regions = hallo_regions(square, resolution, face_expand_ratio)
    image = Image.fromarray(square).resize((resolution, resolution), Image.Resampling.BILINEAR)
    return PreparedPortrait(image=np.array(image, dtype=np.uint8), identity=identity, regions=regions)


def prepare_audio(audio: np.ndarray, sample_rate: int, weights: Path | str) -> np.ndarray:
    """The job's audio as Hallo feeds wav2vec: the vocal stem when the weights folder has the
    separator model, else the audio itself (with a log line saying so)."""
    from emo_cli.backends.emo.separation import MODEL_FILE, find_separator

    path = find_separator(weights)
    if path is None:
        log.info("no audio_separator/%s in %s: vocal separation skipped, wav2vec reads the audio as is",
                 MODEL_FILE, weights)  # fmt: skip
        return np.asarray(audio, dtype=np.float32)
    return _separator(str(path)).separate(audio, sample_rate)


@functools.lru_cache(maxsize=1)
def _float32_wav2vec(path: str, device: str):
    import torch
    from transformers import Wav2Vec2Model

    return Wav2Vec2Model.from_pretrained(path, dtype=torch.float32).to(device).eval().requires_grad_(False)


def hallo_audio_encoder(model):
    """The wav2vec 2.0 to compute a Hallo job's features with: float32, as Hallo runs it whatever
    precision the diffusion networks use (its audio projection then takes them in that precision).
    A model loaded in half precision gets a float32 copy of its encoder, loaded once per worker."""
    import torch

    encoder = model.audio_encoder
    param = next(encoder.parameters())
    if param.dtype == torch.float32 or model.root is None:
        return encoder
    return _float32_wav2vec(str(Path(model.root) / "audio_encoder"), str(param.device))
