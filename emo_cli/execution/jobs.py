"""One job, chunk by chunk: render, watermark, encode, checkpoint, journal; then mux and sign.

Frames never accumulate: each chunk's frames go to ffmpeg and are dropped before the next
chunk is rendered, so memory does not grow with the audio's length. Every file is written
temp-then-rename, and the journal is rewritten after each chunk, so a run killed at any moment
resumes from what is on disk and produces the same video as an uninterrupted run.

Every frame is watermarked with the job id before it is encoded (unless the job's settings
turn that off), and the final MP4 gets C2PA content credentials as part of its atomic write
(unless turned off). The journal records how the output was signed, so a change of signing
identity re-muxes and re-signs a finished job without rendering a chunk.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from emo_cli.backends.base import Backend, JobInput, JobRenderer, State
from emo_cli.errors import EmoError, InputError, RenderError
from emo_cli.execution.checkpoints import pause_point
from emo_cli.execution.results import EventSink, JobFailed, JobResult
from emo_cli.execution.workdir import AUDIO_NAME, Journal, WorkDir
from emo_cli.fsutil import file_matches, remove_stale_temporaries, sha256_file
from emo_cli.media.audio import decode_audio
from emo_cli.media.mux import AacEncoder, mux
from emo_cli.media.segment import SegmentEncoder
from emo_cli.planning.job import Job
from emo_cli.provenance.credentials import content_manifest, sign_video
from emo_cli.provenance.identity import resolve_identity
from emo_cli.provenance.tags import C2PA_OFF, container_metadata, provenance_tags, write_sidecar
from emo_cli.provenance.watermark import FrameMarker

__all__ = ["AUDIO_NAME", "is_finished", "render_job"]


def _ignore(event: dict) -> None:
    pass


def is_finished(job: Job, journal: Journal | None) -> bool:
    """The job's output is muxed and is the very file the journal recorded."""
    if journal is None or journal.job_id != job.id or journal.output != str(job.output):
        return False
    return file_matches(job.output, journal.output_sha256)


def _start_aac(job: Job, path: Path) -> AacEncoder:
    try:
        return AacEncoder(job.audio.path, path)
    except EmoError as exc:
        raise JobFailed(job, f"{job.field}, {job.audio.field}", exc) from exc


def render_job(job: Job, backend: Backend, *, events: EventSink | None = None, resume: bool = True) -> JobResult:
    """Render `job` with `backend` (already loaded) into `job.output`.

    With `resume`, committed chunks that pass their hash are reused and a finished job is
    skipped; without, the job's journal and chunks are dropped and everything is rendered again.

    Raises:
        JobFailed: an expected failure (unusable input, backend or ffmpeg error), naming the
            job and the manifest field or file at fault.
    """
    emit = events or _ignore
    began = time.monotonic()
    work = WorkDir(job.work_dir)
    base = {"job_id": job.id, "job": job.name, "output": str(job.output)}
    ranges = job.chunks()

    try:
        identity = resolve_identity(job.signing) if job.settings.sign else None
    except EmoError as exc:
        raise JobFailed(job, "signing" if job.signing else "signing identity", exc) from exc
    signer = identity.fingerprint if identity is not None else C2PA_OFF
    credentials = identity.describe() if identity is not None else C2PA_OFF

    if not resume:
        work.forget_chunks()
    work.remove_stale_temporaries()
    journal = work.load_journal()
    if is_finished(job, journal) and journal is not None and journal.signer == signer:
        emit({"event": "job_skipped", **base, "reason": "already done", "frames": job.num_frames})
        return JobResult(job.id, job.name, job.output, "skipped", job.num_frames, len(ranges), 0, 0.0,
                         credentials=credentials)  # fmt: skip

    journal = work.fresh_journal(job)
    good = work.good_chunks(journal, ranges)
    todo = [i for i, ok in enumerate(good) if not ok]
    emit({
        "event": "job_started", **base, "frames": job.num_frames, "fps": job.settings.fps,
        "chunks": len(ranges), "chunks_reused": len(ranges) - len(todo),
        "frames_reused": sum(count for ok, (_, count) in zip(good, ranges, strict=True) if ok),
    })  # fmt: skip

    # The audio is encoded for the mux by an ffmpeg of its own from now on, beside the backend's
    # once-per-job analysis (single-threaded) rather than after the last frame.
    audio_aac = work.audio
    aac = None if file_matches(audio_aac, journal.audio_sha256) else _start_aac(job, audio_aac)
    try:
        if todo:
            _render_chunks(job, backend, work, journal, ranges, todo, emit, base, began)
        pause_point("mux:start")
        if aac is not None:
            try:
                aac.finish()
            except EmoError as exc:
                raise JobFailed(job, f"{job.field}, {job.audio.field}", exc) from exc
            journal.audio_sha256 = sha256_file(audio_aac)
            work.save_journal(journal)
    except BaseException:
        if aac is not None:
            aac.abort()  # leaves a finished file in place
        raise

    tags = provenance_tags(job, signer=identity)

    def running() -> None:
        pause_point("mux:running")

    try:
        concat = work.write_concat_list(len(ranges))
        if identity is None:
            mux(concat, audio_aac, job.output, metadata=container_metadata(tags), audio_is_aac=True, while_running=running)
        else:
            # Mux beside the chunks, then sign into a temporary beside the output that is renamed
            # into place: a kill at any point leaves no output or a complete, signed one.
            unsigned = work.unsigned
            mux(concat, audio_aac, unsigned, metadata=container_metadata(tags), audio_is_aac=True, while_running=running)
            pause_point("sign")
            remove_stale_temporaries(job.output)
            sign_video(unsigned, job.output, content_manifest(job, tags), identity,
                       before_rename=lambda: pause_point("sign:written"))  # fmt: skip
            unsigned.unlink()
        write_sidecar(job.output, tags)
    except EmoError as exc:
        raise JobFailed(job, f"{job.field}, mux into {job.output}", exc) from exc
    journal.output = str(job.output)
    journal.output_sha256 = sha256_file(job.output)
    journal.signer = signer
    work.save_journal(journal)
    seconds = time.monotonic() - began
    emit({"event": "job_done", **base, "frames": job.num_frames, "chunks_rendered": len(todo),
          "seconds": round(seconds, 3), "watermark": tags["emo_watermark"], "credentials": credentials,
          "credentials_trusted": identity is not None and not identity.is_local})  # fmt: skip
    return JobResult(job.id, job.name, job.output, "done", job.num_frames, len(ranges), len(todo), seconds,
                     credentials=credentials)  # fmt: skip


def _render_chunks(
    job: Job,
    backend: Backend,
    work: WorkDir,
    journal: Journal,
    ranges: list[tuple[int, int]],
    todo: list[int],
    emit: EventSink,
    base: dict,
    began: float,
) -> None:
    try:
        audio = decode_audio(job.audio.path, backend.sample_rate)
    except EmoError as exc:
        raise JobFailed(job, f"{job.field}, {job.audio.field}", exc) from exc
    job_input = JobInput(
        job_id=job.id,
        portrait_path=job.portrait.path,
        audio=audio,
        sample_rate=backend.sample_rate,
        fps=job.settings.fps,
        num_frames=job.num_frames,
        seed=job.settings.seed,
        resolution=job.settings.resolution,
        options=type(backend).resolve_options(job.settings.options),
    )
    try:
        renderer = backend.start_job(job_input)
    except InputError as exc:
        raise JobFailed(job, f"{job.field}, {job.portrait.field}", exc) from exc
    except EmoError as exc:
        raise JobFailed(job, f"{job.field}, settings.{job.settings.backend}", exc) from exc
    marker = FrameMarker.for_job(job.id) if job.settings.watermark else None
    frames_done = sum(count for i, (_, count) in enumerate(ranges) if i not in todo)
    pending: _Encoding | None = None  # the chunk whose encoder drains while the next one is fed

    def commit_pending() -> None:
        nonlocal pending, frames_done
        if pending is None:
            return
        chunk, pending = pending, None
        try:
            chunk.commit(work, journal)
        except EmoError as exc:
            raise JobFailed(job, chunk.field, exc) from exc
        frames_done += chunk.count
        emit({
            "event": "chunk_done", **base, "chunk": chunk.index, "chunks": len(ranges), "start": chunk.start,
            "count": chunk.count, "frames_done": frames_done, "frames": job.num_frames, "fps": job.settings.fps,
            "seconds": round(time.monotonic() - began, 3),
        })  # fmt: skip

    try:
        state: State | None = None
        state_after = -2  # index of the chunk whose following state `state` is (-1: initial)
        for index in todo:
            start, count = ranges[index]
            if state_after != index - 1:
                state = renderer.initial_state() if index == 0 else work.load_state(index - 1)
            assert state is not None
            pause_point(f"render:{index}")
            encoding = _Encoding(job, work, index, start, count)
            try:
                encoding.render(renderer, state, marker, before_half=commit_pending)
            except JobFailed:  # committing the chunk before this one failed
                raise
            except EmoError as exc:
                raise JobFailed(job, encoding.field, exc) from exc
            pending, state, state_after = encoding, encoding.state, index
        commit_pending()
    except BaseException:
        # An error or interrupt while the next chunk was rendered: the chunk before it is whole,
        # keep it. The first error is the one to report.
        with contextlib.suppress(Exception):
            commit_pending()
        raise
    finally:
        renderer.close()


class _Encoding:
    """One chunk through the render loop: rendered and fed to its encoder, then committed.

    The loop commits a chunk once half of the next chunk is fed, so the encoder's drain (its
    lookahead, the MP4 written, the process exit) overlaps with useful work.
    """

    def __init__(self, job: Job, work: WorkDir, index: int, start: int, count: int) -> None:
        self.job, self.work, self.index, self.start, self.count = job, work, index, start, count
        self.field = f"{job.field}, chunk {index} (frames {start}-{start + count - 1})"
        self.segment: SegmentEncoder | None = None
        self.state: State | None = None

    def render(
        self, renderer: JobRenderer, state: State, marker: FrameMarker | None, before_half: Callable[[], None]
    ) -> None:
        job, index = self.job, self.index
        out = renderer.render_chunk(self.start, self.count, state)
        expected = (self.count, renderer.height, renderer.width, 3)
        if tuple(out.frames.shape) != expected:
            raise RenderError(f"backend {job.settings.backend} returned frames of shape "
                              f"{tuple(out.frames.shape)}, expected {expected}")  # fmt: skip

        def on_half() -> None:
            before_half()
            pause_point(f"encode:{index}")

        self.segment = SegmentEncoder(self.work.segment(index), width=renderer.width,
                                      height=renderer.height, fps=job.settings.fps, gop=job.settings.chunk_frames)  # fmt: skip
        # Marked here, not in the backends, so every backend's frames carry the mark; frame by
        # frame as they go to ffmpeg, so marking overlaps with encoding.
        mark_u = marker.mark_u_cells if marker is not None else None
        self.segment.feed(out.frames, on_half=on_half, mark_u=mark_u)
        self.state = out.state

    def commit(self, work: WorkDir, journal: Journal) -> None:
        """Wait for the segment, checkpoint the state after it, and journal the chunk."""
        assert self.segment is not None and self.state is not None
        self.segment.finish()
        state_sha256 = work.write_state(self.index, self.state)
        pause_point(f"commit:{self.index}")
        work.commit_chunk(journal, self.index, self.start, self.count, state_sha256)
