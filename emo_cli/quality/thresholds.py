"""The gates' thresholds: one frozen record, its defaults tuned on the warp backend's output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """Pass marks for every gate (units as in the README's "Quality gates" table)."""

    lip_sync_min_r: float = 0.4  # correlation of mouth aperture and loudness at the best lag
    max_lag_frames: int = 2  # |best lag| allowed, frames
    lag_search_frames: int = 8  # lags searched each way, frames
    min_mouth_range: float = 0.015  # the mouth must open at least this much, face heights
    rest_min_closed: float = 0.8  # share of silent frames with the mouth closed
    rest_tolerance: float = 0.015  # "closed": within this of the closed aperture, face heights
    rest_margin_frames: int = 3  # silent frames this near speech are not judged
    rest_min_silent_frames: int = 5  # fewer silent frames than this: not judged
    min_ssim: float = 0.6  # upper-face SSIM per chunk (median of its frames)
    max_delta_e_face: float = 5.0  # mean colour shift of the face per chunk, CIE76
    max_delta_e_background: float = 5.0  # the same outside the face
    min_sharpness: float = 0.4  # Laplacian variance of the upper face / the reference's, per chunk
    max_jitter_px: float = 1.0  # stable landmarks, px per frame after head motion is removed
    max_blinks_per_minute: float = 40.0
    min_blinks_per_minute: float = 1.0  # judged only on videos of min_blink_seconds or more
    min_blink_seconds: float = 30.0
    min_face_found: float = 0.98  # share of frames in which the face mesh finds the face
    duration_tolerance_frames: int = 1
    require_provenance: bool = True  # tags, sidecar, C2PA (when signed) and watermark must check out

    def with_overrides(self, **values: Any) -> Thresholds:
        """A copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_settings(cls, qc: Mapping[str, Any]) -> Thresholds:
        """The defaults with a job's `settings.qc` figures on top (its other keys are ignored)."""
        names = cls.names()
        return cls().with_overrides(**{k: v for k, v in qc.items() if k in names})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
