"""The per-job journal: which chunks are finished, with content hashes, and whether the job is done.

One JSON file per job, `<work_dir>/journal.json`, rewritten atomically after every chunk. It is
the single source of truth for `emo plan`, `emo status` and resume. Chunk files are named by
`segment_name` / `state_name` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emo_cli.fsutil import atomic_write_text
from emo_cli.planning.job import Job

FORMAT = 1
JOURNAL_NAME = "journal.json"


CHUNKS_DIRNAME = "chunks"


def segment_name(index: int) -> str:
    return f"{CHUNKS_DIRNAME}/{index:05d}.mp4"


def state_name(index: int) -> str:
    return f"{CHUNKS_DIRNAME}/{index:05d}.state.npz"


@dataclass
class ChunkRecord:
    index: int
    start: int
    count: int
    segment: str  # relative to the work dir
    segment_sha256: str
    state: str
    state_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Journal:
    job_id: str
    num_frames: int
    chunk_frames: int
    chunks: dict[int, ChunkRecord] = field(default_factory=dict)
    output: str | None = None  # final MP4 path once muxed
    output_sha256: str | None = None
    signer: str | None = None  # how the output was signed: certificate sha256, or "off"
    audio_sha256: str | None = None  # the job's audio encoded for the mux (AUDIO_NAME), once done

    @classmethod
    def path_for(cls, work_dir: Path) -> Path:
        return work_dir / JOURNAL_NAME

    @classmethod
    def load(cls, work_dir: Path) -> Journal | None:
        """The journal in `work_dir`, or None if absent or unreadable (then the job restarts)."""
        path = cls.path_for(work_dir)
        try:
            doc = json.loads(path.read_text())
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
        }
        atomic_write_text(self.path_for(work_dir), json.dumps(doc, indent=1, sort_keys=True))


@dataclass(frozen=True)
class JobProgress:
    chunks_done: int
    chunks_total: int
    complete: bool  # final MP4 muxed and present

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
