"""The per-job journal and progress, importable under their old home.

`emo_cli.execution.workdir` owns the work dir's layout, the journal and the chunk store; these
names are re-exported for code that imports them from here.
"""

from emo_cli.execution.workdir import (
    CHUNKS_DIRNAME,
    JOURNAL_NAME,
    ChunkRecord,
    JobProgress,
    Journal,
    read_progress,
    segment_name,
    state_name,
)

__all__ = [
    "CHUNKS_DIRNAME",
    "JOURNAL_NAME",
    "ChunkRecord",
    "JobProgress",
    "Journal",
    "read_progress",
    "segment_name",
    "state_name",
]
