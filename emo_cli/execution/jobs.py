"""One job, chunk by chunk: render, encode, checkpoint, journal; then mux with provenance.

Frames never accumulate: each chunk's frames go to ffmpeg and are dropped before the next
chunk is rendered, so memory does not grow with the audio's length. Every file is written
temp-then-rename, and the journal is rewritten after each chunk, so a run killed at any moment
resumes from what is on disk and produces the same video as an uninterrupted run.
"""

from __future__ import annotations

import shutil
import time

from emo_cli.backends.base import Backend, JobInput, JobRenderer, State
from emo_cli.errors import EmoError, InputError, RenderError
from emo_cli.execution.checkpoints import pause_point
from emo_cli.execution.chunks import chunk_is_good, commit_chunk, load_state, write_state
from emo_cli.execution.journal import Journal, segment_name
from emo_cli.execution.results import EventSink, JobFailed, JobResult
from emo_cli.fsutil import sha256_file
from emo_cli.media.audio import decode_audio
from emo_cli.media.mux import mux, write_concat_list
from emo_cli.media.segment import encode_segment
from emo_cli.planning.job import Job
from emo_cli.provenance.tags import provenance_tags, write_sidecar


def _ignore(event: dict) -> None:
    pass


def is_finished(job: Job, journal: Journal | None) -> bool:
    """The job's output is muxed and is the very file the journal recorded."""
    if journal is None or journal.job_id != job.id or journal.output != str(job.output):
        return False
    try:
        return job.output.is_file() and sha256_file(job.output) == journal.output_sha256
    except OSError:
        return False


def render_job(job: Job, backend: Backend, *, events: EventSink | None = None, resume: bool = True) -> JobResult:
    """Render `job` with `backend` (already loaded) into `job.output`.

    With `resume`, committed chunks that pass their hash are reused and a finished job is
    skipped; without, the job's work dir is cleared and everything is rendered again.

    Raises:
        JobFailed: an expected failure (unusable input, backend or ffmpeg error), naming the
            job and the manifest field or file at fault.
    """
    emit = events or _ignore
    began = time.monotonic()
    work = job.work_dir
    base = {"job_id": job.id, "job": job.name, "output": str(job.output)}
    ranges = job.chunks()

    if not resume and work.exists():
        shutil.rmtree(work)
    journal = Journal.load(work)
    if is_finished(job, journal):
        emit({"event": "job_skipped", **base, "reason": "already done", "frames": job.num_frames})
        return JobResult(job.id, job.name, job.output, "skipped", job.num_frames, len(ranges), 0, 0.0)

    if (
        journal is None
        or journal.job_id != job.id
        or (journal.num_frames, journal.chunk_frames) != (job.num_frames, job.settings.chunk_frames)
    ):
        journal = Journal(job_id=job.id, num_frames=job.num_frames, chunk_frames=job.settings.chunk_frames)
    journal.output = journal.output_sha256 = None
    good = [chunk_is_good(work, journal.chunks.get(i), i, start, count) for i, (start, count) in enumerate(ranges)]
    for index in [i for i in journal.chunks if i >= len(ranges) or not good[i]]:
        del journal.chunks[index]
    todo = [i for i, ok in enumerate(good) if not ok]
    emit({
        "event": "job_started", **base, "frames": job.num_frames, "fps": job.settings.fps,
        "chunks": len(ranges), "chunks_reused": len(ranges) - len(todo),
        "frames_reused": sum(count for ok, (_, count) in zip(good, ranges, strict=True) if ok),
    })  # fmt: skip

    if todo:
        _render_chunks(job, backend, journal, ranges, todo, emit, base, began)

    pause_point("mux:start")
    segments = [segment_name(i) for i in range(len(ranges))]
    tags = provenance_tags(job)
    try:
        concat = write_concat_list(work, segments)
        mux(concat, job.audio.path, job.output, tags=tags, while_running=lambda: pause_point("mux:running"))
        write_sidecar(job.output, tags)
    except EmoError as exc:
        raise JobFailed(job, f"{job.field}, mux into {job.output}", exc) from exc
    journal.output = str(job.output)
    journal.output_sha256 = sha256_file(job.output)
    journal.save(work)
    seconds = time.monotonic() - began
    emit({"event": "job_done", **base, "frames": job.num_frames, "chunks_rendered": len(todo),
          "seconds": round(seconds, 3)})  # fmt: skip
    return JobResult(job.id, job.name, job.output, "done", job.num_frames, len(ranges), len(todo), seconds)


def _render_chunks(
    job: Job,
    backend: Backend,
    journal: Journal,
    ranges: list[tuple[int, int]],
    todo: list[int],
    emit: EventSink,
    base: dict,
    began: float,
) -> None:
    work = job.work_dir
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
    try:
        state: State | None = None
        state_after = -2  # index of the chunk whose following state `state` is (-1: initial)
        frames_done = sum(count for i, (_, count) in enumerate(ranges) if i not in todo)
        for index in todo:
            start, count = ranges[index]
            if state_after != index - 1:
                state = renderer.initial_state() if index == 0 else load_state(work, index - 1)
            assert state is not None
            pause_point(f"render:{index}")
            try:
                state = _render_one(job, renderer, journal, index, start, count, state)
            except EmoError as exc:
                raise JobFailed(job, f"{job.field}, chunk {index} (frames {start}-{start + count - 1})", exc) from exc
            state_after = index
            frames_done += count
            emit({
                "event": "chunk_done", **base, "chunk": index, "chunks": len(ranges), "start": start,
                "count": count, "frames_done": frames_done, "frames": job.num_frames, "fps": job.settings.fps,
                "seconds": round(time.monotonic() - began, 3),
            })  # fmt: skip
    finally:
        renderer.close()


def _render_one(
    job: Job, renderer: JobRenderer, journal: Journal, index: int, start: int, count: int, state: State
) -> State:
    work = job.work_dir
    out = renderer.render_chunk(start, count, state)
    expected = (count, renderer.height, renderer.width, 3)
    if tuple(out.frames.shape) != expected:
        raise RenderError(f"backend {job.settings.backend} returned frames of shape {tuple(out.frames.shape)}, "
                          f"expected {expected}")  # fmt: skip
    encode_segment(
        out.frames,
        work / segment_name(index),
        fps=job.settings.fps,
        gop=job.settings.chunk_frames,
        on_half=lambda: pause_point(f"encode:{index}"),
    )
    state_sha256 = write_state(work, index, out.state)
    pause_point(f"commit:{index}")
    commit_chunk(journal, work, index, start, count, state_sha256)
    return out.state
