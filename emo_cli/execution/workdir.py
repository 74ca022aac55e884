"""A job's work dir, `<output_dir>/.emo/jobs/<job id>/`: the one module that names its files.

It holds the journal, the chunk store (each chunk's segment and the backend state after it),
the job's audio encoded for the mux, the mux's inputs and, while a process renders the job, its
lease (`emo_cli.execution.lease` takes the lease names from here)::

    journal.json               chunk records with sha256 of both files; the output once muxed
    chunks/00000.mp4           frames [0, chunk_frames) in the output format, one GOP from a key frame
    chunks/00000.state.npz     the backend state after that chunk (`encode_state`: npz + JSON)
    audio.m4a                  the job's audio in the output format's codec (sha256 in the journal)
    segments.ffconcat          the concat demuxer's list, written just before the mux
    unsigned.mp4               the muxed output before it is signed (signing on)
    lease.00000001.json        the current lease (the highest number), see `lease`
    events.jsonl               the job's events from every run, one JSON line each (`job_log`)

The journal is rewritten atomically after every chunk; it is the single source of truth for
`emo plan`, `emo status` and resume. A chunk is committed when its segment and state are both in
place and the journal lists their sha256; anything else (missing, truncated, altered, or written
but never journaled) is rendered again. The state after chunk k is what chunk k + 1 starts from,
so a chunk is only ever rendered from a state file that passed its hash (or from the state the
run has just produced).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emo_cli.backends.base import State, decode_state, encode_state
from emo_cli.fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    file_matches,
    remove_stale_temporaries,
    sha256_file,
)
from emo_cli.media.formats import MP4, OutputFormat
from emo_cli.media.mux import write_concat_list
from emo_cli.planning.job import Job

FORMAT = 1
JOURNAL_NAME = "journal.json"
CHUNKS_DIRNAME = "chunks"
AUDIO_STEM = "audio"  # + the output format's audio suffix: audio.m4a
UNSIGNED_STEM = "unsigned"  # + the output's suffix: unsigned.mp4
CONCAT_LIST_NAME = "segments.ffconcat"
JOB_LOG_NAME = "events.jsonl"
LEASE_FILE = re.compile(r"lease\.(\d{8,})\.json")  # 8 digits, more once the numbers pass 99999999
AUDIO_NAME = AUDIO_STEM + ".m4a"  # the MP4 output's audio (kept for callers that name it)
UNSIGNED_NAME = UNSIGNED_STEM + ".mp4"


def segment_name(index: int, suffix: str = ".mp4") -> str:
    """Chunk `index`'s segment, relative to the work dir."""
    return f"{CHUNKS_DIRNAME}/{index:05d}{suffix}"


def state_name(index: int) -> str:
    """The backend state after chunk `index`, relative to the work dir."""
    return f"{CHUNKS_DIRNAME}/{index:05d}.state.npz"


def job_log(work_dir: Path) -> Path:
    """The job's event log: appended to by every run, never rewritten (see `runner.JobLogs`)."""
    return work_dir / JOB_LOG_NAME


def lease_name(generation: int) -> str:
    return f"lease.{generation:08d}.json"


def lease_temporary_name(token: str) -> str:
    """A claim's temporary (hidden, so stale-temporary cleanup and listings pass it by)."""
    return f".lease.{token}.tmp"


@dataclass
class ChunkRecord:
    index: int
    start: int
    count: int
    segment: str  # relative to the work dir
    segment_sha256: str
    state: str
    state_sha256: str
    qc: dict[str, Any] | None = None  # the quality gates' record of the chunk (`chunkqc.ChunkQc`)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "qc" or v is not None}


@dataclass(frozen=True)
class PublishedOutput:
    """One output published from this work dir: what its file and its sidecar hashed to, and
    how it was signed. Jobs with identical content share a work dir and each publish their own."""

    sha256: str
    signer: str | None  # certificate sha256, or "off"
    sidecar_sha256: str | None  # None in journals written before sidecars were recorded

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Journal:
    job_id: str
    num_frames: int
    chunk_frames: int
    chunks: dict[int, ChunkRecord] = field(default_factory=dict)
    output: str | None = None  # the output published last
    output_sha256: str | None = None
    signer: str | None = None  # how the output was signed: certificate sha256, or "off"
    audio_sha256: str | None = None  # the job's audio encoded for the mux, once done
    outputs: dict[str, PublishedOutput] = field(default_factory=dict)  # every published output, by path
    created: str | None = None  # the output's creation time (ISO 8601 UTC), kept so a re-mux repeats it
    quality: dict[str, Any] | None = None  # the quality gates' summary once published (`chunkqc`)

    def record_output(self, output: str, sha256: str, signer: str | None, sidecar_sha256: str) -> None:
        """`output` was published (its sidecar too): remember it beside the others."""
        self.output, self.output_sha256, self.signer = output, sha256, signer
        self.outputs[output] = PublishedOutput(sha256, signer, sidecar_sha256)

    @classmethod
    def path_for(cls, work_dir: Path) -> Path:
        return work_dir / JOURNAL_NAME

    @classmethod
    def load(cls, work_dir: Path) -> Journal | None:
        """The journal in `work_dir`, or None if absent or damaged (then the job restarts)."""
        return cls.read(work_dir)[0]

    @classmethod
    def read(cls, work_dir: Path) -> tuple[Journal | None, str | None]:
        """(journal, damage): the journal in `work_dir` (None if absent or unusable) and what
        is wrong with the file, if anything. Chunk and output records of the wrong shape are
        dropped one by one, so the chunks the others list are still verified and kept."""
        path = cls.path_for(work_dir)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except IsADirectoryError:
            return None, "is a folder, not a file"
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror or exc})"
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError:
            return None, "is not valid JSON"
        if not isinstance(doc, dict):
            return None, f"is a JSON {type(doc).__name__}, not a journal"
        if doc.get("format") != FORMAT:
            return None, f"has format {doc.get('format')!r}, not {FORMAT}"
        try:
            return cls.from_document(doc)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, "has fields of the wrong shape"

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> tuple[Journal, str | None]:
        """The journal `doc` describes, and which of its records were dropped as damaged.

        Raises:
            ValueError, KeyError, TypeError, AttributeError: a top-level field of the wrong shape.
        """
        job_id, num_frames, chunk_frames = doc["job_id"], doc["num_frames"], doc["chunk_frames"]
        if not (isinstance(job_id, str) and type(num_frames) is int and type(chunk_frames) is int):
            raise TypeError("job_id, num_frames or chunk_frames of the wrong type")
        chunks, bad_chunks = _records(doc.get("chunks"), _keyed_chunk)
        outputs, bad_outputs = _records(doc.get("outputs"), _keyed_output)
        dropped = bad_chunks + bad_outputs
        output, output_sha256, signer = doc.get("output"), doc.get("output_sha256"), doc.get("signer")
        if not all(v is None or isinstance(v, str) for v in (output, output_sha256, signer)):
            output = output_sha256 = signer = None
            dropped += 1
        if not outputs and output is not None and output_sha256 is not None and "outputs" not in doc:
            # A journal from before `outputs`: its one output, with no sidecar on record.
            outputs[output] = PublishedOutput(output_sha256, signer, None)
        journal = cls(
            job_id=job_id,
            num_frames=num_frames,
            chunk_frames=chunk_frames,
            chunks=chunks,
            output=output,
            output_sha256=output_sha256,
            signer=signer,
            audio_sha256=_typed(doc.get("audio_sha256"), str),
            outputs=outputs,
            created=_typed(doc.get("created"), str),
            quality=_typed(doc.get("quality"), dict),
        )
        return journal, (f"had {dropped} damaged record{'s' if dropped != 1 else ''}, dropped" if dropped else None)

    def save(self, work_dir: Path) -> None:
        doc = {
            "format": FORMAT,
            "job_id": self.job_id,
            "num_frames": self.num_frames,
            "chunk_frames": self.chunk_frames,
            "chunks": {str(i): rec.to_dict() for i, rec in sorted(self.chunks.items())},
            "output": self.output,
            "output_sha256": self.output_sha256,
            "signer": self.signer,
            "audio_sha256": self.audio_sha256,
            "outputs": {path: published.to_dict() for path, published in sorted(self.outputs.items())},
            "created": self.created,
            **({"quality": self.quality} if self.quality is not None else {}),
        }
        atomic_write_text(self.path_for(work_dir), json.dumps(doc, indent=1, sort_keys=True))


def _records(section: Any, parse: Callable[[Any, Any], Any]) -> tuple[dict, int]:
    """The records of one journal section (`chunks` or `outputs`) that `parse` accepts, keyed
    as `parse` keys them, and how many it dropped as damaged."""
    records: dict = {}
    dropped = 0
    for key, value in dict(section or {}).items():
        record = parse(key, value)
        if record is None:
            dropped += 1
        else:
            records[record[0]] = record[1]
    return records, dropped


def _typed(value: Any, kind: type) -> Any:
    """`value` if it is a `kind`, else None (a damaged optional field)."""
    return value if isinstance(value, kind) else None


def _keyed_chunk(key: Any, value: Any) -> tuple[int, ChunkRecord] | None:
    record = _chunk_record(key, value)
    return None if record is None else (record.index, record)


def _keyed_output(key: Any, value: Any) -> tuple[str, PublishedOutput] | None:
    published = _published_output(value)
    return None if published is None else (str(key), published)


def _chunk_record(key: Any, value: Any) -> ChunkRecord | None:
    """A journal's chunk record, or None if it is of the wrong shape."""
    try:
        record = ChunkRecord(**value)
    except TypeError:
        return None
    names = (record.segment, record.segment_sha256, record.state, record.state_sha256)
    numbers = (record.index, record.start, record.count)
    if not (all(isinstance(v, str) for v in names) and all(type(v) is int for v in numbers)):
        return None
    if record.qc is not None and not isinstance(record.qc, dict):
        return None
    return record if str(record.index) == str(key) else None


def _published_output(value: Any) -> PublishedOutput | None:
    try:
        published = PublishedOutput(**value)
    except TypeError:
        return None
    fields = (published.sha256, published.signer, published.sidecar_sha256)
    ok = isinstance(published.sha256, str) and all(v is None or isinstance(v, str) for v in fields)
    return published if ok else None


def journal_output(job: Job) -> str:
    """How the journal records `job.output`: relative to output_dir, so a moved project stays done."""
    return job.output.relative_to(job.output_dir).as_posix()


class WorkDir:
    """One job's work dir: its files by role, its chunk store and its clean-up.

    File suffixes follow the output's format `fmt`: segments in its container, the encoded audio
    in its audio suffix (".mp4" and ".m4a" for MP4).
    """

    def __init__(self, path: Path, fmt: OutputFormat = MP4, guard: Callable[[], None] | None = None) -> None:
        self.path = path
        # Called before every journal write and publish: raises when this process may no
        # longer write here (its lease was taken over).
        self.guard = guard or (lambda: None)
        self.segment_suffix = fmt.suffix
        self.audio = path / (AUDIO_STEM + fmt.audio_suffix)
        self.unsigned = path / (UNSIGNED_STEM + fmt.suffix)
        self.concat_list = path / CONCAT_LIST_NAME

    def segment_name(self, index: int) -> str:
        return segment_name(index, self.segment_suffix)

    def segment(self, index: int) -> Path:
        return self.path / self.segment_name(index)

    # -- the journal --

    def load_journal(self) -> Journal | None:
        return Journal.load(self.path)

    def repair_journal(self) -> str | None:
        """Check the journal; if it is damaged, say how (once, for the caller to report) and
        put it right: an unusable file (or folder) is removed so a fresh journal replaces it,
        a journal with damaged records is rewritten without them. None when it was sound."""
        chunks = self.path / CHUNKS_DIRNAME
        if os.path.lexists(chunks) and not (chunks.is_dir() and not chunks.is_symlink()):
            chunks.unlink()
            if self.load_journal() is not None:
                return f"{chunks} was not a folder; removed (the journal's chunks are rendered again)"
        journal, damage = Journal.read(self.path)
        if damage is None:
            return None
        path = Journal.path_for(self.path)
        if journal is not None:
            self.save_journal(journal)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        if journal is not None:
            return f"{path} {damage}; the chunks it still lists are verified by their hash and kept"
        return f"{path} {damage}; replaced by a fresh journal (its chunks are rendered again)"

    def save_journal(self, journal: Journal) -> None:
        self.guard()
        journal.save(self.path)

    def fresh_journal(self, job: Job) -> Journal:
        """The journal to resume `job` from: the one on disk if it is this job's, else an empty one.

        What the journal says about `job`'s output is cleared: the caller publishes it again.
        Outputs of other jobs with the same content stay on record (their files are checked
        against it before they count as done).
        Its creation time stays, so publishing the same job again writes the same bytes.
        """
        journal = self.load_journal()
        if (
            journal is None
            or journal.job_id != job.id
            or (journal.num_frames, journal.chunk_frames) != (job.num_frames, job.settings.chunk_frames)
        ):
            journal = Journal(job_id=job.id, num_frames=job.num_frames, chunk_frames=job.settings.chunk_frames)
        journal.output = journal.output_sha256 = journal.signer = journal.quality = None
        journal.outputs.pop(journal_output(job), None)
        return journal

    # -- the chunk store --

    def chunk_is_good(self, record: ChunkRecord | None, index: int, start: int, count: int) -> bool:
        """Whether chunk `index` covering [start, start + count) is committed and intact."""
        if record is None or (record.index, record.start, record.count) != (index, start, count):
            return False
        if record.segment != self.segment_name(index) or record.state != state_name(index):
            return False
        return all(
            file_matches(self.path / name, digest)
            for name, digest in ((record.segment, record.segment_sha256), (record.state, record.state_sha256))
        )

    def good_chunks(self, journal: Journal, ranges: list[tuple[int, int]]) -> list[bool]:
        """Which of `ranges` are committed and intact; the journal forgets the others."""
        good = [self.chunk_is_good(journal.chunks.get(i), i, start, count) for i, (start, count) in enumerate(ranges)]
        for index in [i for i in journal.chunks if i >= len(ranges) or not good[i]]:
            del journal.chunks[index]
        return good

    def load_state(self, index: int) -> State:
        """The state checkpointed after chunk `index` (verified by `chunk_is_good` beforehand)."""
        return decode_state((self.path / state_name(index)).read_bytes())

    def write_state(self, index: int, state: State) -> str:
        """Checkpoint the state after chunk `index` atomically; returns its sha256."""
        data = encode_state(state)
        atomic_write_bytes(self.path / state_name(index), data)
        return hashlib.sha256(data).hexdigest()

    def commit_chunk(self, journal: Journal, index: int, start: int, count: int, state_sha256: str,
                     qc: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Record chunk `index` (segment and state already in place, `qc` its quality record)
        and save the journal."""
        journal.chunks[index] = ChunkRecord(
            index=index,
            start=start,
            count=count,
            segment=self.segment_name(index),
            segment_sha256=sha256_file(self.segment(index)),
            state=state_name(index),
            state_sha256=state_sha256,
            qc=qc,
        )
        self.save_journal(journal)

    def write_concat_list(self, count: int) -> Path:
        """The concat demuxer's list of the first `count` segments (names relative to the work dir)."""
        return write_concat_list(self.concat_list, [self.segment_name(i) for i in range(count)])

    # -- clean-up --

    def remove_stale_temporaries(self) -> None:
        """Delete what a killed run left half-written here (the lease is held meanwhile; another
        process's lease temporaries are not among these names)."""
        for stale in (self.path / CHUNKS_DIRNAME).glob(".*.tmp*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        for path in (self.audio, self.unsigned, Journal.path_for(self.path), self.concat_list):
            remove_stale_temporaries(path)

    def chunk_store_files(self) -> list[Path]:
        """What `drop_chunk_store` removes: the chunks and the mux's inputs, where they exist."""
        chunks = self.path / CHUNKS_DIRNAME
        found = [p for p in chunks.rglob("*") if p.is_file()] if chunks.is_dir() else []
        return found + [p for p in (self.audio, self.unsigned, self.concat_list) if p.is_file()]

    def drop_chunk_store(self, journal: Journal) -> None:
        """Remove the chunks and the mux's inputs of a finished job (the lease is held meanwhile).
        The journal keeps the record of every published output, so a rerun still skips the job;
        it forgets the chunks and the encoded audio, so a render that needs them makes them again."""
        journal.chunks.clear()
        journal.audio_sha256 = None
        self.save_journal(journal)  # first: a journal never lists a chunk that is gone
        shutil.rmtree(self.path / CHUNKS_DIRNAME, ignore_errors=True)
        for path in (self.audio, self.unsigned, self.concat_list):
            path.unlink(missing_ok=True)

    def forget_chunks(self) -> None:
        """Drop the journal and chunks, keeping the lease files (the lease is held meanwhile)."""
        Journal.path_for(self.path).unlink(missing_ok=True)
        shutil.rmtree(self.path / CHUNKS_DIRNAME, ignore_errors=True)


@dataclass(frozen=True)
class JobProgress:
    chunks_done: int
    chunks_total: int
    complete: bool  # final output published and present

    @property
    def state(self) -> str:
        if self.complete:
            return "done"
        if self.chunks_done:
            return "partial"
        return "pending"


def read_progress(job: Job) -> JobProgress:
    """Progress of a job from its journal alone (cheap: no hashing), for plan and status."""
    total = len(job.chunks())
    journal = Journal.load(job.work_dir)
    if journal is None or journal.job_id != job.id:
        return JobProgress(0, total, False)
    done = sum(1 for rec in journal.chunks.values() if (job.work_dir / rec.segment).exists())
    published = journal_output(job) in journal.outputs and job.output.exists()
    if published and not journal.chunks:  # `emo clean` removed the chunks of the finished job
        return JobProgress(total, total, True)
    return JobProgress(min(done, total), total, published and done == total)
