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
import re
import shutil
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
LEASE_FILE = re.compile(r"lease\.(\d{8})\.json")
AUDIO_NAME = AUDIO_STEM + ".m4a"  # the MP4 output's audio (kept for callers that name it)
UNSIGNED_NAME = UNSIGNED_STEM + ".mp4"


def segment_name(index: int, suffix: str = ".mp4") -> str:
    """Chunk `index`'s segment, relative to the work dir."""
    return f"{CHUNKS_DIRNAME}/{index:05d}{suffix}"


def state_name(index: int) -> str:
    """The backend state after chunk `index`, relative to the work dir."""
    return f"{CHUNKS_DIRNAME}/{index:05d}.state.npz"


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


@dataclass
class Journal:
    job_id: str
    num_frames: int
    chunk_frames: int
    chunks: dict[int, ChunkRecord] = field(default_factory=dict)
    output: str | None = None  # final output path once published
    output_sha256: str | None = None
    signer: str | None = None  # how the output was signed: certificate sha256, or "off"
    audio_sha256: str | None = None  # the job's audio encoded for the mux, once done
    quality: dict[str, Any] | None = None  # the quality gates' summary once published (`chunkqc`)

    @classmethod
    def path_for(cls, work_dir: Path) -> Path:
        return work_dir / JOURNAL_NAME

    @classmethod
    def load(cls, work_dir: Path) -> Journal | None:
        """The journal in `work_dir`, or None if absent or unreadable (then the job restarts)."""
        try:
            doc = json.loads(cls.path_for(work_dir).read_text())
            if doc.get("format") != FORMAT:
                return None
            return cls(
                job_id=doc["job_id"],
                num_frames=doc["num_frames"],
                chunk_frames=doc["chunk_frames"],
                chunks={int(k): ChunkRecord(**v) for k, v in doc["chunks"].items()},
                output=doc.get("output"),
                output_sha256=doc.get("output_sha256"),
                signer=doc.get("signer"),
                audio_sha256=doc.get("audio_sha256"),
                quality=doc.get("quality"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

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
            **({"quality": self.quality} if self.quality is not None else {}),
        }
        atomic_write_text(self.path_for(work_dir), json.dumps(doc, indent=1, sort_keys=True))


class WorkDir:
    """One job's work dir: its files by role, its chunk store and its clean-up.

    File suffixes follow the output's format `fmt`: segments in its container, the encoded audio
    in its audio suffix (".mp4" and ".m4a" for MP4).
    """

    def __init__(self, path: Path, fmt: OutputFormat = MP4) -> None:
        self.path = path
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

    def save_journal(self, journal: Journal) -> None:
        journal.save(self.path)

    def fresh_journal(self, job: Job) -> Journal:
        """The journal to resume `job` from: the one on disk if it is this job's, else an empty one.

        What the journal says about a finished output is cleared: the caller publishes again.
        """
        journal = self.load_journal()
        if (
            journal is None
            or journal.job_id != job.id
            or (journal.num_frames, journal.chunk_frames) != (job.num_frames, job.settings.chunk_frames)
        ):
            journal = Journal(job_id=job.id, num_frames=job.num_frames, chunk_frames=job.settings.chunk_frames)
        journal.output = journal.output_sha256 = journal.signer = journal.quality = None
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
    complete = bool(journal.output) and job.output.exists() and done == total
    return JobProgress(min(done, total), total, complete)
