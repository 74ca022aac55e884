"""Rendered videos for the quality gates: one normal warp render and one per fault.

Every video is a real render of the committed astronaut portrait saying the committed English
sentence with 1.2 s of silence in the middle (so the mouth-at-rest measure has silence to
judge), at 256x256 in chunks of 50 frames. Faults are made the way they arise: by the backend
(`expression: 0`; frames driven by audio 200 ms early; a colour cast in one chunk's frames), or
by editing the published file (frames dropped from the end, then signed and described again as
a render would; metadata stripped by re-encoding).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from factories import ASSETS, PORTRAIT, make_job, write_samples  # noqa: E402

from emo_cli.backends.base import ChunkOutput, JobInput, JobRenderer, State  # noqa: E402
from emo_cli.backends.warp import WarpBackend  # noqa: E402
from emo_cli.execution.jobs import render_job  # noqa: E402
from emo_cli.media.audio import decode_audio  # noqa: E402
from emo_cli.media.ffmpeg import run_ffmpeg  # noqa: E402
from emo_cli.planning.job import Job  # noqa: E402

RATE = 16000
CHUNK_FRAMES = 50
RESOLUTION = 256
SHIFT_S = 0.2
CAST_CHUNK = 2  # the chunk whose frames get a colour cast
CAST_RGB = (18, 0, -18)  # warmer: about 12 CIE76 units on the face
DROPPED_FRAMES = 10


class EarlyMouthWarp(WarpBackend):
    """Drives the face with the audio SHIFT_S early: the muxed track lags the picture by that much."""

    def start_job(self, job: JobInput) -> JobRenderer:
        shift = int(SHIFT_S * job.sample_rate)
        early = np.concatenate([job.audio[shift:], np.zeros(shift, np.float32)])
        return super().start_job(dataclasses.replace(job, audio=early))


class _CastRenderer(JobRenderer):
    def __init__(self, inner: JobRenderer) -> None:
        self.inner, self.width, self.height = inner, inner.width, inner.height

    def initial_state(self) -> State:
        return self.inner.initial_state()

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        out = self.inner.render_chunk(start, count, state)
        if start == CAST_CHUNK * CHUNK_FRAMES:
            cast = np.clip(out.frames.astype(np.int16) + np.array(CAST_RGB, np.int16), 0, 255).astype(np.uint8)
            return ChunkOutput(cast, out.state)
        return out

    def close(self) -> None:
        self.inner.close()


class ColourCastWarp(WarpBackend):
    """The warp backend with a colour cast in chunk CAST_CHUNK's frames (a drifting chunk)."""

    def start_job(self, job: JobInput) -> JobRenderer:
        return _CastRenderer(super().start_job(job))


@pytest.fixture(scope="session")
def speech_with_pause(tmp_path_factory: pytest.TempPathFactory) -> Path:
    voice = decode_audio(ASSETS / "hello_en.wav", RATE)
    cut = int(3.2 * RATE)  # between two words
    audio = np.concatenate([voice[:cut], np.zeros(int(1.2 * RATE), np.float32), voice[cut:]])
    return write_samples(tmp_path_factory.mktemp("qc_audio") / "pause.wav", audio, RATE)


def _render(folder: Path, audio: Path, backend: WarpBackend, name: str, **options) -> Job:
    job = make_job(folder / name, PORTRAIT, audio, backend="warp", resolution=RESOLUTION, chunk_frames=CHUNK_FRAMES,
                   options=options, output=f"{name}.mp4", name=f"astronaut/{name}")  # fmt: skip
    render_job(job, backend)
    return job


@pytest.fixture(scope="session")
def qc_videos(tmp_path_factory: pytest.TempPathFactory, speech_with_pause: Path) -> dict[str, Path]:
    """{"normal", "frozen", "shifted", "cast", "dropped", "stripped"} -> video path."""
    folder = tmp_path_factory.mktemp("qc_videos")
    normal = _render(folder, speech_with_pause, WarpBackend(), "normal")
    videos = {
        "normal": normal.output,
        "frozen": _render(folder, speech_with_pause, WarpBackend(), "frozen", expression=0).output,
        "shifted": _render(folder, speech_with_pause, EarlyMouthWarp(), "shifted").output,
        "cast": _render(folder, speech_with_pause, ColourCastWarp(), "cast").output,
        "dropped": _drop_last_frames(normal, folder / "dropped.mp4"),
        "stripped": folder / "stripped" / "stripped.mp4",
    }
    videos["stripped"].parent.mkdir()
    run_ffmpeg(["-i", str(normal.output), "-map", "0:v", "-map", "0:a", "-c:v", "libx264", "-crf", "20",
                "-c:a", "copy", "-map_metadata", "-1", str(videos["stripped"])],
               what="strip the metadata of", file=normal.output)  # fmt: skip
    return videos


def _drop_last_frames(job: Job, output: Path) -> Path:
    """The job's video less its last DROPPED_FRAMES frames (audio whole), signed and given a
    sidecar as the render loop would: a render that came out short, not a tampered file."""
    from emo_cli.provenance.credentials import content_manifest, sign_video
    from emo_cli.provenance.identity import resolve_identity
    from emo_cli.provenance.tags import read_tags, write_sidecar

    short = output.with_name("dropped.video.mp4")
    run_ffmpeg(["-i", str(job.output), "-map", "0:v", "-frames:v", str(job.num_frames - DROPPED_FRAMES),
                "-c:v", "libx264", "-crf", "18", str(short)], what="trim", file=job.output)  # fmt: skip
    unsigned = output.with_name("dropped.unsigned.mp4")
    run_ffmpeg(["-i", str(short), "-i", str(job.output), "-map", "0:v", "-map", "1:a", "-c", "copy",
                "-map_metadata", "1", "-movflags", "+use_metadata_tags", str(unsigned)],
               what="mux", file=job.output)  # fmt: skip
    tags = read_tags(job.output)
    sign_video(unsigned, output, content_manifest(job, tags), resolve_identity(None))
    write_sidecar(output, tags)
    return output
