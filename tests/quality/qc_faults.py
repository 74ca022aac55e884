"""The faults the quality gates must catch, made the way they arise (see conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from factories import PORTRAIT, make_job

from emo_cli.backends.base import ChunkOutput, JobInput, JobRenderer, State
from emo_cli.backends.warp import WarpBackend
from emo_cli.execution.jobs import render_job
from emo_cli.media.ffmpeg import run_ffmpeg
from emo_cli.planning.job import Job

RATE = 16000
CHUNK_FRAMES = 50
RESOLUTION = 256
SHIFT_S = 0.2
CAST_CHUNK = 2  # the chunk whose frames get a colour cast
CAST_RGB = (18, 0, -18)  # warmer: about 12 CIE76 units on the face
DROPPED_FRAMES = 10
BLUR_CHUNK = 1
BLUR_SIGMA = 1.5
PAUSE_AT_S, PAUSE_S = 3.2, 1.2  # where the test speech pauses, and for how long


class EarlyMouthWarp(WarpBackend):
    """Drives the face with the audio SHIFT_S early: the muxed track lags the picture by that much."""

    def start_job(self, job: JobInput) -> JobRenderer:
        shift = int(SHIFT_S * job.sample_rate)
        early = np.concatenate([job.audio[shift:], np.zeros(shift, np.float32)])
        return super().start_job(dataclasses.replace(job, audio=early))


class _ChunkFault(JobRenderer):
    """Renders as the inner renderer does, then spoils the frames of one chunk with `spoil`."""

    def __init__(self, inner: JobRenderer, chunk: int, spoil) -> None:
        self.inner, self.width, self.height = inner, inner.width, inner.height
        self.chunk, self.spoil = chunk, spoil

    def initial_state(self) -> State:
        return self.inner.initial_state()

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        out = self.inner.render_chunk(start, count, state)
        if start == self.chunk * CHUNK_FRAMES:
            return ChunkOutput(np.stack([self.spoil(frame) for frame in out.frames]), out.state)
        return out

    def close(self) -> None:
        self.inner.close()


def colour_cast(frame: np.ndarray) -> np.ndarray:
    return np.clip(frame.astype(np.int16) + np.array(CAST_RGB, np.int16), 0, 255).astype(np.uint8)


def blur(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(frame, (0, 0), BLUR_SIGMA)


class ColourCastWarp(WarpBackend):
    """The warp backend with a colour cast in chunk CAST_CHUNK's frames (a drifting chunk)."""

    def start_job(self, job: JobInput) -> JobRenderer:
        return _ChunkFault(super().start_job(job), CAST_CHUNK, colour_cast)


class BlurWarp(WarpBackend):
    """The warp backend with chunk BLUR_CHUNK's frames out of focus."""

    def start_job(self, job: JobInput) -> JobRenderer:
        return _ChunkFault(super().start_job(job), BLUR_CHUNK, blur)


class BabbleWarp(WarpBackend):
    """Drives the face with speech where the track is silent: the mouth talks through the pause."""

    def start_job(self, job: JobInput) -> JobRenderer:
        audio = job.audio.copy()
        a, n = int(PAUSE_AT_S * job.sample_rate), int(PAUSE_S * job.sample_rate)
        words = int(1.0 * job.sample_rate)  # the speech from 1.0 s on is words without a pause
        audio[a : a + n] = job.audio[words : words + n]
        return super().start_job(dataclasses.replace(job, audio=audio))


def render(folder: Path, audio: Path, backend: WarpBackend, name: str, **options) -> Job:
    job = make_job(folder / name, PORTRAIT, audio, backend="warp", resolution=RESOLUTION, chunk_frames=CHUNK_FRAMES,
                   options=options, output=f"{name}.mp4", name=f"astronaut/{name}")  # fmt: skip
    render_job(job, backend)
    return job


def drop_last_frames(job: Job, output: Path) -> Path:
    """The job's video less its last DROPPED_FRAMES frames (audio whole), signed and given a
    sidecar as the render loop would: a render that came out short, not a tampered file."""
    from datetime import datetime

    from emo_cli.fsutil import sha256_file
    from emo_cli.provenance.credentials import sign_video
    from emo_cli.provenance.identity import resolve_identity
    from emo_cli.provenance.record import ProvenanceRecord
    from emo_cli.provenance.tags import read_tags, write_sidecar

    short = output.with_name("dropped.video.mp4")
    run_ffmpeg(["-i", str(job.output), "-map", "0:v", "-frames:v", str(job.num_frames - DROPPED_FRAMES),
                "-c:v", "libx264", "-crf", "18", str(short)], what="trim", file=job.output)  # fmt: skip
    unsigned = output.with_name("dropped.unsigned.mp4")
    run_ffmpeg(["-i", str(short), "-i", str(job.output), "-map", "0:v", "-map", "1:a", "-c", "copy",
                "-map_metadata", "1", "-movflags", "+use_metadata_tags", str(unsigned)],
               what="mux", file=job.output)  # fmt: skip
    created = datetime.fromisoformat(read_tags(job.output)["emo_created"].replace("Z", "+00:00"))
    record = ProvenanceRecord.for_job(job, resolve_identity(None), created=created)
    sign_video(unsigned, output, record.c2pa_manifest("video/mp4"), record.signer)
    write_sidecar(output, record.sidecar(output.name, sha256_file(output)))
    return output
