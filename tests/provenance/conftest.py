"""Fixtures for provenance tests: photographic test frames, manifests that render them, and
ffmpeg re-encodes of the results.

`testbars` draws flat synthetic bars, a poor carrier for a watermark that lives in 8x8 block
statistics. `PortraitPatchBackend` ("portraitpatch") shows the real portrait at the job's
resolution with a small patch that moves from frame to frame, so marks are tested on
photographic content that changes over time. It lives in tests/plugins beside `testbars`, so
the render's worker processes find it through the entry point as well.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from factories import PLUGINS, PORTRAIT, write_wav

from emo_cli.backends import registry
from emo_cli.media.ffmpeg import run_ffmpeg

sys.path.insert(0, str(PLUGINS))
try:
    from emo_test_backends import PortraitPatchBackend, portrait_frame  # noqa: F401 - re-exported for tests
finally:
    sys.path.remove(str(PLUGINS))

@pytest.fixture
def portrait_backend(test_backends, monkeypatch: pytest.MonkeyPatch) -> type[PortraitPatchBackend]:
    """`portraitpatch`, registered here and, through tests/plugins, in worker processes too."""
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
