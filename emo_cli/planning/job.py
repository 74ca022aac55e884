"""What a render is made of: jobs with effective settings and content-addressed ids.

`emo_cli.manifest` turns a YAML file into a `Plan`; `emo_cli.execution` renders it. These frozen
dataclasses are the contract between the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emo_cli.manifest.signing import SigningFiles

__all__ = ["Job", "Plan", "Settings", "SigningFiles", "Source", "chunk_ranges", "frames_for"]

WORK_DIRNAME = ".emo"  # under output_dir: per-job chunks, journals, leases


@dataclass(frozen=True)
class Settings:
    """The effective settings of one job (defaults, then the job's overrides)."""

    backend: str
    fps: int
    resolution: int
    seed: int
    chunk_frames: int
    options: Mapping[str, Any] = field(default_factory=dict)  # the backend's own, defaults filled
    watermark: bool = True  # settings.provenance.watermark: mark every frame (changes frames)
    sign: bool = True  # settings.provenance.sign: C2PA-sign the final MP4 (changes no frame)
    format: str = "mp4"  # the output format (`emo_cli.media.formats`), from the output's suffix
    qc: Mapping[str, Any] = field(default_factory=dict)  # settings.qc: quality gates, defaults filled

    def to_dict(self) -> dict[str, Any]:
        """The settings that shape the frames, as hashed into the job id.

        `sign` is left out on purpose: it changes no frame, so turning it on or off re-muxes
        and re-signs a finished job (the journal records how its output was signed) without
        rendering a single chunk again. The watermark changes every frame, so it is in. The
        format changes every chunk's encoding: it is in, except for MP4, which every job id
        made before there were other formats stands for. The quality gates (`qc`) only judge
        frames, so they are out, except with `on_fail: retry`, where the thresholds choose which
        seed renders a chunk: then they change frames and are in.
        """
        return {
            "backend": self.backend,
            "fps": self.fps,
            "resolution": self.resolution,
            "seed": self.seed,
            "chunk_frames": self.chunk_frames,
            "options": dict(self.options),
            "provenance": {"watermark": self.watermark},
            **({"format": self.format} if self.format != "mp4" else {}),
            **({"qc": dict(self.qc)} if self.qc_retries else {}),
        }

    @property
    def qc_retries(self) -> bool:
        """Whether a failing chunk is rendered again with the next seed (changes frames)."""
        return bool(self.qc.get("enabled", True)) and self.qc.get("on_fail") == "retry"


@dataclass(frozen=True)
class Source:
    """A portrait or an audio track, as named in the manifest."""

    name: str  # the key under portraits: / audio:
    path: Path  # absolute
    sha256: str
    field: str  # where it is defined, for messages: "portraits.anna"
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. consent: for portraits


@dataclass(frozen=True)
class Job:
    id: str  # content address: see emo_cli.planning.fingerprint
    name: str  # human name, "anna/fr"
    portrait: Source
    audio: Source
    settings: Settings
    output: Path  # absolute final MP4, always inside output_dir
    output_dir: Path
    manifest: Path
    field: str  # where the job comes from, for messages: "jobs[2]" or "matrix[anna,fr]"
    duration: float  # seconds of audio
    backend_version: str
    weights_identity: str
    signing: SigningFiles | None = None  # the manifest's `signing:`; None: environment or local

    @property
    def consent(self) -> Mapping[str, Any] | None:
        """The portrait's consent record (reference, subject, expires), if it has one."""
        consent = self.portrait.extra.get("consent")
        return consent if isinstance(consent, Mapping) else None

    @property
    def num_frames(self) -> int:
        return frames_for(self.duration, self.settings.fps)

    @property
    def work_dir(self) -> Path:
        """Where this job's chunks, journal and lease live."""
        return self.output_dir / WORK_DIRNAME / "jobs" / self.id

    def chunks(self) -> list[tuple[int, int]]:
        """(start, count) of every chunk, in order."""
        return chunk_ranges(self.num_frames, self.settings.chunk_frames)


@dataclass(frozen=True)
class Plan:
    manifest: Path
    output_dir: Path
    jobs: tuple[Job, ...]
    policy: Mapping[str, Any] = field(default_factory=dict)


def frames_for(duration: float, fps: int) -> int:
    """Frames = ceil(duration x fps), with a tolerance so 2.0 s x 25 fps is 50, not 51."""
    return max(1, math.ceil(duration * fps - 1e-6))


def chunk_ranges(num_frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    return [(start, min(chunk_frames, num_frames - start)) for start in range(0, num_frames, chunk_frames)]
