"""The chunk loop: a job's missing chunks rendered, watermarked, encoded and committed in order.

Frames never accumulate: each chunk's frames go to ffmpeg and are dropped before the next
chunk is rendered, so memory does not grow with the audio's length. A chunk is committed (its
segment and the backend state after it in place, then journaled, see `workdir`) once half of
the next chunk is fed to its encoder, so the encoder's drain overlaps with useful work.

Every frame is watermarked with the job id before it is encoded (unless the job's settings
turn that off): marked here, not in the backends, so every backend's frames carry the mark.

With the job's quality gates on (`settings.qc`), each chunk's frames are measured and judged
before they are encoded, rendered again with the next seed on `on_fail: retry`, and their
record is journaled with the chunk (see `chunkqc`).

After each commit the loop calls its `after_commit` hooks with the `CommittedChunk`: the place
for per-chunk work on finished segments (the `chunk_done` event is sent from there too).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.backends.base import Backend, ChunkOutput, JobInput, JobRenderer, State
from emo_cli.errors import EmoError, InputError, RenderError
from emo_cli.execution.checkpoints import pause_point
from emo_cli.execution.chunkqc import ChunkGate, ChunkQc, qc_enabled
from emo_cli.execution.results import EventSink, JobFailed, RenderEvent, failing_as
from emo_cli.execution.workdir import Journal, WorkDir
from emo_cli.media.audio import decode_audio
from emo_cli.media.formats import MP4, OutputFormat
from emo_cli.media.segment import SegmentEncoder
from emo_cli.planning.job import Job
from emo_cli.provenance.watermark import FrameMarker


@dataclass(frozen=True)
class CommittedChunk:
    """A chunk that is on disk and journaled: what an `after_commit` hook is given."""

    job: Job
    index: int
    chunks: int  # in the job
    start: int  # first frame
    count: int
    segment: Path  # the committed segment file
    frames_done: int  # frames of the job committed so far, this one included
    qc: dict | None = None  # the chunk's quality record as journaled (None: gates off)


ChunkHook = Callable[[CommittedChunk], None]


class ChunkLoop:
    """Renders chunks `todo` of `job` (their indices into `ranges`) with a loaded `backend`."""

    def __init__(self, job: Job, backend: Backend, work: WorkDir, journal: Journal, ranges: list[tuple[int, int]],
                 todo: list[int], *, fmt: OutputFormat = MP4, after_commit: Sequence[ChunkHook] = ()) -> None:  # fmt: skip
        self.job, self.backend, self.work, self.journal, self.fmt = job, backend, work, journal, fmt
        self.ranges, self.todo = ranges, todo
        self.after_commit = list(after_commit)
        self.frames_done = sum(count for i, (_, count) in enumerate(ranges) if i not in todo)
        self.pending: _Encoding | None = None  # the chunk whose encoder drains while the next one is fed
        self.gate: ChunkGate | None = None

    def run(self) -> None:
        renderer = self._start_renderer()
        mark = self._watermark()
        if self.gate is None and qc_enabled(self.job):
            with failing_as(self.job, f"{self.job.field}, {self.job.portrait.field}"):
                self.gate = ChunkGate(self.job, self.audio, self.backend.sample_rate)
        try:
            state: State | None = None
            state_after = -2  # index of the chunk whose following state `state` is (-1: initial)
            for index in self.todo:
                start, count = self.ranges[index]
                if state_after != index - 1:
                    state = renderer.initial_state() if index == 0 else self.work.load_state(index - 1)
                assert state is not None
                pause_point(f"render:{index}", job=self.job.name)
                encoding = _Encoding(self.job, self.work, self.fmt, index, start, count)
                with failing_as(self.job, encoding.field):
                    encoding.render(renderer, state, mark, before_half=self._commit_pending, gate=self.gate)
                self.pending, state, state_after = encoding, encoding.state, index
            self._commit_pending()
        except BaseException:
            # An error or interrupt while the next chunk was rendered: the chunk before it is
            # whole, keep it. The first error is the one to report.
            with contextlib.suppress(Exception):
                self._commit_pending()
            raise
        finally:
            renderer.close()

    def _watermark(self) -> Callable[[np.ndarray], None] | None:
        """What marks each frame in the plane the output format names (None: marking is off)."""
        if not self.job.settings.watermark:
            return None
        marker = FrameMarker.for_job(self.job.id)
        planes = {"u": marker.mark_u_cells}  # the U plane of 4:2:0, as the encoder is fed
        return planes[self.fmt.watermark_plane]

    def _start_renderer(self) -> JobRenderer:
        job, backend = self.job, self.backend
        with failing_as(job, f"{job.field}, {job.audio.field}"):
            audio = self.audio = decode_audio(job.audio.path, backend.sample_rate)
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
            return backend.start_job(job_input)
        except InputError as exc:  # the portrait (no face, unreadable)
            raise JobFailed(job, f"{job.field}, {job.portrait.field}", exc) from exc
        except EmoError as exc:  # the backend's options or weights
            raise JobFailed(job, f"{job.field}, settings.{job.settings.backend}", exc) from exc

    def _commit_pending(self) -> None:
        if self.pending is None:
            return
        chunk, self.pending = self.pending, None
        with failing_as(self.job, chunk.field):
            chunk.commit(self.work, self.journal)
        self.frames_done += chunk.count
        committed = CommittedChunk(self.job, chunk.index, len(self.ranges), chunk.start, chunk.count,
                                   self.work.segment(chunk.index), self.frames_done,
                                   chunk.qc.to_dict() if chunk.qc else None)  # fmt: skip
        for hook in self.after_commit:
            hook(committed)


class _Encoding:
    """One chunk through the render loop: rendered and fed to its encoder, then committed."""

    def __init__(self, job: Job, work: WorkDir, fmt: OutputFormat, index: int, start: int, count: int) -> None:
        self.job, self.work, self.fmt, self.index, self.start, self.count = job, work, fmt, index, start, count
        self.field = f"{job.field}, chunk {index} (frames {start}-{start + count - 1})"
        self.segment: SegmentEncoder | None = None
        self.state: State | None = None
        self.qc: ChunkQc | None = None

    def render(
        self, renderer: JobRenderer, state: State, mark: Callable[[np.ndarray], None] | None,
        before_half: Callable[[], None], gate: ChunkGate | None = None,
    ) -> None:
        job, index = self.job, self.index
        out = self._render(renderer, state) if gate is None else self._render_judged(renderer, state, gate)

        def on_half() -> None:
            before_half()
            pause_point(f"encode:{index}")

        self.segment = SegmentEncoder(self.work.segment(index), width=renderer.width, height=renderer.height,
                                      fps=job.settings.fps, gop=job.settings.chunk_frames, fmt=self.fmt)  # fmt: skip
        # Frame by frame as they go to ffmpeg, so marking overlaps with encoding.
        self.segment.feed(out.frames, on_half=on_half, mark_u=mark)
        self.state = out.state

    def _render(self, renderer: JobRenderer, state: State) -> ChunkOutput:
        out = renderer.render_chunk(self.start, self.count, state)
        expected = (self.count, renderer.height, renderer.width, 3)
        if tuple(out.frames.shape) != expected:
            raise RenderError(f"backend {self.job.settings.backend} returned frames of shape "
                              f"{tuple(out.frames.shape)}, expected {expected}")  # fmt: skip
        return out

    def _render_judged(self, renderer: JobRenderer, state: State, gate: ChunkGate) -> ChunkOutput:
        """Render and judge the chunk; on retry, render it again from the same state with the
        job's seed + 1, + 2, ... until it passes or the retries are spent."""
        seed = self.job.settings.seed
        out = self._render(renderer, state)
        self.qc = qc = ChunkQc([gate.check(self.index, self.start, out.frames, seed)])
        reseeded = True
        while not qc.kept.passed and len(qc.attempts) <= gate.retries:
            next_seed = seed + len(qc.attempts)
            reseeded = renderer.reseed(next_seed)
            if not reseeded:
                break
            pause_point(f"retry:{self.index}")
            out = self._render(renderer, state)
            qc.attempts.append(gate.check(self.index, self.start, out.frames, next_seed))
        if len(qc.attempts) > 1:
            renderer.reseed(seed)
        if not qc.kept.passed and gate.on_fail != "warn":
            raise gate.failure(qc, reseeded)
        return out

    def commit(self, work: WorkDir, journal: Journal) -> None:
        """Wait for the segment, checkpoint the state after it, and journal the chunk."""
        assert self.segment is not None and self.state is not None
        self.segment.finish()
        state_sha256 = work.write_state(self.index, self.state)
        pause_point(f"commit:{self.index}")
        work.commit_chunk(journal, self.index, self.start, self.count, state_sha256,
                          qc=self.qc.to_dict() if self.qc else None)  # fmt: skip


def chunk_done_event(emit: EventSink, base: dict, began: float) -> ChunkHook:
    """The hook that reports each committed chunk as a `chunk_done` event."""

    def report(chunk: CommittedChunk) -> None:
        job = chunk.job
        emit(RenderEvent.of(
            "chunk_done", **base, chunk=chunk.index, chunks=chunk.chunks, start=chunk.start,
            count=chunk.count, frames_done=chunk.frames_done, frames=job.num_frames,
            fps=job.settings.fps, seconds=round(time.monotonic() - began, 3),
            **({"qc": chunk.qc} if chunk.qc is not None else {}),
        ))  # fmt: skip

    return report
