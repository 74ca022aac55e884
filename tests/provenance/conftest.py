"""Fixtures for provenance tests: photographic test frames, manifests that render them, and
ffmpeg re-encodes of the results.

`testbars` draws flat synthetic bars, a poor carrier for a watermark that lives in 8x8 block
statistics. `PortraitPatchBackend` ("portraitpatch") shows the real portrait at the job's
resolution with a small patch that moves from frame to frame, so marks are tested on
photographic content that changes over time. It registers through `register_backend`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from factories import PORTRAIT, write_wav

from emo_cli.backends import registry
from emo_cli.backends.base import Backend, ChunkOutput, JobInput, JobRenderer, State
from emo_cli.media.ffmpeg import run_ffmpeg

PATCH = 40  # side of the moving patch, pixels


def portrait_frame(path: Path, size: int) -> np.ndarray:
    """The portrait as an RGB frame of size x size pixels."""
    import cv2

    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


class PortraitPatchBackend(Backend):
    name: ClassVar[str] = "portraitpatch"
    version: ClassVar[str] = "1.0"

    def start_job(self, job: JobInput) -> JobRenderer:
        return PortraitPatchRenderer(portrait_frame(job.portrait_path, job.resolution))


class PortraitPatchRenderer(JobRenderer):
    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.height, self.width = base.shape[:2]

    def initial_state(self) -> State:
        return {"frames": 0}

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        frames = np.repeat(self.base[None], count, axis=0)
        for offset in range(count):
            index = start + offset
            y = (self.height // 4 + 3 * index) % (self.height - PATCH)
            x = self.width // 2
            # The patch shows the portrait's own pixels, shifted: still photographic content.
            frames[offset, y : y + PATCH, x : x + PATCH] = np.roll(
                self.base[y : y + PATCH, x : x + PATCH], index, axis=1
            )
        return ChunkOutput(frames=frames, state={"frames": int(state["frames"]) + count})


@pytest.fixture
def portrait_backend(monkeypatch: pytest.MonkeyPatch) -> type[PortraitPatchBackend]:
    monkeypatch.setitem(registry._registered, PortraitPatchBackend.name, PortraitPatchBackend)
    return PortraitPatchBackend


def manifest_text(*, defaults: str = "", extra: str = "", face: str = "astronaut.jpg") -> str:
    """A one-job manifest (portrait face, audio voice) for portraitpatch at 512x512.

    `defaults` adds lines under `defaults:` (indented by two spaces); `extra` adds top-level
    lines.
    """
    lines = [
        "version: 1",
        "output_dir: out",
        "defaults:",
        "  backend: portraitpatch",
        "  resolution: 512",
        "  chunk_frames: 20",
        *[line for line in defaults.splitlines() if line.strip()],
        "portraits:",
        f"  face: {face}",
        "audio:",
        "  voice: voice.wav",
        "jobs:",
        "  - {portrait: face, audio: voice}",
        *[line for line in extra.splitlines() if line.strip()],
    ]
    return "\n".join(lines) + "\n"


def project(folder: Path, seconds: float = 1.2) -> Path:
    """A folder with the demo portrait and a short voice track, ready for a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PORTRAIT, folder / "astronaut.jpg")
    write_wav(folder / "voice.wav", seconds)
    return folder


def reencode(
    source: Path, target: Path, *, crf: int = 23, scale: float | None = None, strip: bool = True
) -> Path:
    """Re-encode the video of `source` as ffmpeg does by default (libx264, preset medium) at
    `crf` in yuv420p, optionally scaled, with the metadata dropped."""
    args = [
        "-i",
        os.fspath(source),
        "-map",
        "0:v:0",
        "-c:v",
        "libx264",
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
    ]
    if scale is not None:
        args += ["-vf", f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2"]
    if strip:
        args += ["-map_metadata", "-1"]
    run_ffmpeg([*args, "-an", os.fspath(target)], what="re-encode", file=source)
    return target


def render_manifest_at(path: Path) -> Any:
    from emo_cli.execution import render_manifest

    events: list[dict] = []
    summary = render_manifest(path, events=events.append)
    assert summary.exit_code == 0, [r.error for r in summary.results]
    return summary, events
