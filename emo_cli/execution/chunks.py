"""The chunk store: a job's committed segments and states, verified against the journal.

A chunk is committed when its segment (`journal.segment_name`) and the state after it
(`journal.state_name`) are both in place and the journal lists their sha256. Anything else
(missing, truncated, altered, or written but never journaled) is rendered again.

On disk, under `job.work_dir` (`<output_dir>/.emo/jobs/<job id>/`)::

    journal.json               chunk records with sha256 of both files; the output once muxed
    chunks/00000.mp4           frames [0, chunk_frames) as H.264, one GOP starting with an IDR
    chunks/00000.state.npz     the backend state after that chunk (`encode_state`: npz + JSON)
    audio.m4a                  the job's audio as AAC (the journal lists its sha256), for the mux
    segments.ffconcat          the concat demuxer's list, written just before the mux

The state after chunk k is what chunk k + 1 starts from, so a chunk is only ever rendered from
a state file that passed its hash (or from the state the run has just produced).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from emo_cli.backends.base import State, decode_state, encode_state
from emo_cli.execution.journal import ChunkRecord, Journal, segment_name, state_name
from emo_cli.fsutil import atomic_write_bytes, file_matches, sha256_file


def chunk_is_good(work_dir: Path, record: ChunkRecord | None, index: int, start: int, count: int) -> bool:
    """Whether chunk `index` covering [start, start + count) is committed and intact."""
    if record is None or (record.index, record.start, record.count) != (index, start, count):
        return False
    if record.segment != segment_name(index) or record.state != state_name(index):
        return False
    return all(
        file_matches(work_dir / name, digest)
        for name, digest in ((record.segment, record.segment_sha256), (record.state, record.state_sha256))
    )


def load_state(work_dir: Path, index: int) -> State:
    """The state checkpointed after chunk `index` (verified by `chunk_is_good` beforehand)."""
    return decode_state((work_dir / state_name(index)).read_bytes())


def write_state(work_dir: Path, index: int, state: State) -> str:
    """Checkpoint the state after chunk `index` atomically; returns its sha256."""
    data = encode_state(state)
    atomic_write_bytes(work_dir / state_name(index), data)
    return hashlib.sha256(data).hexdigest()


def commit_chunk(journal: Journal, work_dir: Path, index: int, start: int, count: int, state_sha256: str) -> None:
    """Record chunk `index` (segment and state already in place) and save the journal."""
    journal.chunks[index] = ChunkRecord(
        index=index,
        start=start,
        count=count,
        segment=segment_name(index),
        segment_sha256=sha256_file(work_dir / segment_name(index)),
        state=state_name(index),
        state_sha256=state_sha256,
    )
    journal.save(work_dir)
