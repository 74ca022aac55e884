"""The job id recipe, in one place: what a render depends on, hashed.

A job id is the first 16 hex digits of sha256 over a canonical JSON document holding the
portrait's and the audio's sha256, the effective settings, the backend's name and version, the
identity of its weights, and this recipe's own format number. Same inputs, same id, on any
machine; change any of them and the id (and so the work folder and checkpoints) changes too.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from emo_cli.planning.job import Settings

FINGERPRINT_FORMAT = 1
JOB_ID_LENGTH = 16


def job_id(
    *,
    portrait_sha256: str,
    audio_sha256: str,
    settings: Settings,
    backend_version: str,
    weights_identity: str,
) -> str:
    """The content address of a job (16 hex digits)."""
    doc = {
        "format": FINGERPRINT_FORMAT,
        "portrait_sha256": portrait_sha256,
        "audio_sha256": audio_sha256,
        "settings": settings.to_dict(),
        "backend": settings.backend,
        "backend_version": backend_version,
        "weights_identity": weights_identity,
    }
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()[:JOB_ID_LENGTH]


def settings_id(settings: Settings, backend_version: str, weights_identity: str) -> str:
    """What the output template's `{settings}` stands for: 8 hex digits of the job's settings, the
    backend version and the weights identity, without the inputs. Two revisions of one
    portrait/audio pair get two files; the same settings give every pair the same token."""
    doc = {"settings": settings.to_dict(), "backend_version": backend_version, "weights_identity": weights_identity}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()[:8]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces, and 1.0 written as 1, so equal settings hash equally."""
    return json.dumps(
        _canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"setting value {value} is not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"setting value of type {type(value).__name__} cannot be fingerprinted")
