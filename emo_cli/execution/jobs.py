"""One job: resume check -> chunk loop -> publish.

`render_job` reads the work dir (`workdir`) to find what is already done, renders what is
missing (`chunkloop`), and publishes the output with its provenance (`publish`). Every file is
written temp-then-rename and the journal is rewritten after each chunk, so a run killed at any
moment resumes from what is on disk and produces the same video as an uninterrupted run.

The journal records how the output was signed, so a change of signing identity re-muxes and
re-signs a finished job without rendering a chunk.

With quality gates on (`settings.qc`, see `chunkqc`), the chunk loop judges each chunk and the
published output is measured whole; the summary goes into the journal, the sidecar (`quality`)
and the `job_done` event, and `on_fail: fail | retry` turns a failed gate into a failed job
(again on a later run, from the journal, until the job changes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from emo_cli.backends.base import Backend
from emo_cli.errors import StorageError
from emo_cli.execution.checkpoints import pause_point
from emo_cli.execution.chunkloop import ChunkHook, ChunkLoop, chunk_done_event
from emo_cli.execution.chunkqc import enforce, job_quality, qc_enabled, verdict, video_gates
from emo_cli.execution.lease import LeaseLost, check_still_held
from emo_cli.execution.publish import publish
from emo_cli.execution.results import EventSink, JobFailed, JobResult, RenderEvent, failing_as
from emo_cli.execution.workdir import AUDIO_NAME, Journal, WorkDir, journal_output
from emo_cli.fsutil import file_matches, sha256_file
from emo_cli.media.formats import OutputFormat, format_for
from emo_cli.media.mux import AudioEncoder
from emo_cli.planning.job import Job
from emo_cli.provenance.identity import SigningIdentity, resolve_identity
from emo_cli.provenance.record import ProvenanceRecord, c2pa_supports
from emo_cli.provenance.tags import C2PA_OFF, C2PA_UNSUPPORTED, sidecar_path, write_sidecar

__all__ = ["AUDIO_NAME", "is_finished", "journal_output", "render_job"]


def _ignore(event: RenderEvent) -> None:
    pass


def is_finished(job: Job, journal: Journal | None, signer: str | None = None) -> bool:
    """The job's output and its sidecar are published and are the very files the journal
    recorded for this output (signed by `signer`, a fingerprint or "off", when given).

    Jobs with identical content share a journal, so each output is looked up by its path
    (relative to output_dir, so a moved project stays done): one job's output being done says
    nothing of another's. A deleted or edited sidecar makes the job unfinished, so the next
    render writes it again.
    """
    if journal is None or journal.job_id != job.id:
        return False
    published = journal.outputs.get(journal_output(job))
    if published is None or published.sidecar_sha256 is None:
        return False
    if signer is not None and published.signer != signer:
        return False
    return file_matches(job.output, published.sha256) and file_matches(sidecar_path(job.output),
                                                                       published.sidecar_sha256)


def render_job(job: Job, backend: Backend, *, events: EventSink | None = None, resume: bool = True,
               after_chunk: Sequence[ChunkHook] = ()) -> JobResult:  # fmt: skip
    """Render `job` with `backend` (already loaded) into `job.output`.

    With `resume`, committed chunks that pass their hash are reused and a finished job is
    skipped; without, the job's journal and chunks are dropped and everything is rendered again.
    `after_chunk` hooks are called with each `CommittedChunk` once it is on disk and journaled.

    Raises:
        JobFailed: an expected failure (unusable input, backend or ffmpeg error, a storage
            fault such as a full disk), naming the job and the manifest field or file at fault.
    """
    try:
        return _render_job(job, backend, events=events, resume=resume, after_chunk=after_chunk)
    except LeaseLost as exc:  # stalled past the lease timeout, taken over: stopped, touched nothing
        raise JobFailed(job, f"{job.field}, lease", exc) from exc
    except OSError as exc:  # the file system refused a write: say which file and what to do
        raise JobFailed(job, f"{job.field}, files under {job.output_dir}", StorageError.from_os_error(exc)) from exc


def _render_job(job: Job, backend: Backend, *, events: EventSink | None, resume: bool,
                after_chunk: Sequence[ChunkHook]) -> JobResult:  # fmt: skip
    emit = events or _ignore
    began = time.monotonic()
    with failing_as(job, f"{job.field}, output"):
        fmt = format_for(job.output)
    work, ranges = WorkDir(job.work_dir, fmt, guard=lambda: check_still_held(job.work_dir)), job.chunks()
    base = {"job_id": job.id, "job": job.name, "output": str(job.output)}
    signer, c2pa_note = _signing(job, fmt)
    credentials = signer.describe() if signer is not None else C2PA_UNSUPPORTED if c2pa_note else C2PA_OFF

    damage = work.repair_journal()
    if damage is not None:
        emit(RenderEvent.of("state_repaired", **base, message=damage))
    journal = _resume_check(job, work, resume, signer)
    if journal is None:
        quality = _recorded_quality(job, work)
        emit(RenderEvent.of("job_skipped", **base, reason="already done", frames=job.num_frames))
        return JobResult(job.id, job.name, job.output, "skipped", job.num_frames, len(ranges), 0, 0.0,
                         credentials=credentials, qc=quality)  # fmt: skip
    good = work.good_chunks(journal, ranges)
    todo = [i for i, ok in enumerate(good) if not ok]
    emit(RenderEvent.of(
        "job_started", **base, frames=job.num_frames, fps=job.settings.fps,
        chunks=len(ranges), chunks_reused=len(ranges) - len(todo),
        frames_reused=sum(count for ok, (_, count) in zip(good, ranges, strict=True) if ok),
    ))  # fmt: skip

    audio = _JobAudio(job, work, journal, fmt)  # encoded beside the backend's once-per-job analysis
    try:
        if todo:
            hooks = [chunk_done_event(emit, base, began), *after_chunk]
            ChunkLoop(job, backend, work, journal, ranges, todo, fmt=fmt, after_commit=hooks).run()
        pause_point("mux:start")
        audio.finish()
    except BaseException:
        audio.abort()  # leaves a finished file in place
        raise

    record = ProvenanceRecord.for_job(job, signer, c2pa_note=c2pa_note, created=_created(journal))
    journal.created = record.created  # a later re-mux of this job repeats it (see `_created`)
    digest, sidecar_digest = publish(job, work, record, len(ranges), fmt)
    journal.record_output(journal_output(job), digest, record.signer_fingerprint, sidecar_digest)
    qc = _judge(job, work, journal, record)
    seconds = time.monotonic() - began
    emit(RenderEvent.of("job_done", **base, frames=job.num_frames, chunks_rendered=len(todo),
          seconds=round(seconds, 3), watermark=record.watermark, credentials=credentials,
          credentials_trusted=signer is not None and not signer.is_local,
          **_qc_event(journal)))  # fmt: skip
    return JobResult(job.id, job.name, job.output, "done", job.num_frames, len(ranges), len(todo), seconds,
                     credentials=credentials, qc=qc)  # fmt: skip


def _judge(job: Job, work: WorkDir, journal: Journal, record: ProvenanceRecord) -> str | None:
    """Save the journal of the published job with its quality summary (gates on): the
    whole-video gates on the output (unless `settings.qc.video` is false) and the chunks'
    records, also written into the output's sidecar. Returns the verdict (None: gates off).

    Raises:
        JobFailed: a gate failed and `on_fail` is not warn.
    """
    journal.quality = _quality(job, journal, record) if qc_enabled(job) else None
    work.save_journal(journal)
    if journal.quality is None:
        return None
    with failing_as(job, f"{job.field}, settings.qc"):
        enforce(job, journal.quality)
    return verdict(journal.quality)


def _qc_event(journal: Journal) -> dict:
    return {"qc": journal.quality} if journal.quality is not None else {}


def _quality(job: Job, journal: Journal, record: ProvenanceRecord) -> dict:
    video = None
    if job.settings.qc.get("video", True):
        pause_point("qc:video")
        video = video_gates(job)
    quality = job_quality(job, journal.chunks, video)
    assert journal.output_sha256 is not None
    sidecar = write_sidecar(job.output, {**record.sidecar(job.output.name, journal.output_sha256), "quality": quality})
    # The sidecar now holds the figures: record its new hash, so the job counts as done.
    journal.record_output(journal_output(job), journal.output_sha256, journal.signer, sha256_file(sidecar))
    return quality


def _recorded_quality(job: Job, work: WorkDir) -> str | None:
    """A finished job's quality verdict from its journal; its failure again where it failed."""
    journal = work.load_journal()
    quality = journal.quality if journal is not None and qc_enabled(job) else None
    if quality is None:
        return None
    with failing_as(job, f"{job.field}, settings.qc"):
        enforce(job, quality)
    return verdict(quality)


def _created(journal: Journal) -> datetime | None:
    """The creation time the job's output was first published with, if any.

    Publishing the same job again (output altered or deleted, project moved, signer changed)
    writes the same container bytes as before: the tags, `creation_time` and sidecar repeat this
    time. Only a C2PA signature differs between two publishes, since the signer stamps the time
    of signing into it (and, with a new identity, a new certificate).
    """
    if not journal.created:
        return None
    try:
        return datetime.fromisoformat(journal.created.replace("Z", "+00:00"))
    except ValueError:
        return None


def _signing(job: Job, fmt: OutputFormat) -> tuple[SigningIdentity | None, str | None]:
    """Who signs the job's output (None when signing is off), and why it is not signed when
    signing is on but C2PA cannot sign the output's container."""
    if not job.settings.sign:
        return None, None
    if not c2pa_supports(fmt.mime):
        return None, (f"not signed: C2PA cannot sign {fmt.mime} ({fmt.name}) files; the provenance tags, "
                      "this sidecar and the invisible watermark mark the video (render to .mp4 for "
                      "content credentials)")  # fmt: skip
    with failing_as(job, "signing" if job.signing else "signing identity"):
        return resolve_identity(job.signing), None


def _resume_check(job: Job, work: WorkDir, resume: bool, signer: SigningIdentity | None) -> Journal | None:
    """The journal to render from; None when the job is finished and signed as asked."""
    if not resume:
        work.forget_chunks()
    work.remove_stale_temporaries()
    journal = work.load_journal()
    expected = signer.fingerprint if signer is not None else C2PA_OFF
    if is_finished(job, journal, expected):
        return None
    return work.fresh_journal(job)


class _JobAudio:
    """The job's audio encoded for the mux (in the output format's codec) by an ffmpeg of its own, from the job's start (beside
    the backend's single-threaded analysis) rather than after the last frame; reused when the
    journal lists it and it is intact."""

    def __init__(self, job: Job, work: WorkDir, journal: Journal, fmt: OutputFormat) -> None:
        self.job, self.work, self.journal = job, work, journal
        self.encoder: AudioEncoder | None = None
        if not file_matches(work.audio, journal.audio_sha256):
            with failing_as(job, f"{job.field}, {job.audio.field}"):
                self.encoder = AudioEncoder(job.audio.path, work.audio, fmt)

    def finish(self) -> None:
        if self.encoder is None:
            return
        with failing_as(self.job, f"{self.job.field}, {self.job.audio.field}"):
            self.encoder.finish()
        self.encoder = None
        self.journal.audio_sha256 = sha256_file(self.work.audio)
        self.work.save_journal(self.journal)

    def abort(self) -> None:
        if self.encoder is not None:
            self.encoder.abort()

