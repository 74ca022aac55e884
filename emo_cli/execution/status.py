"""Per-job progress of a plan, read from the journals alone (no rendering, no hashing of chunks).

The rows `emo plan` and `emo status` print.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from emo_cli.execution.workdir import read_progress
from emo_cli.planning.job import Plan


@dataclass(frozen=True)
class JobRow:
    """One job of a plan and how far it has rendered."""

    name: str
    id: str
    field: str
    backend: str
    duration: float
    frames: int
    chunks: int
    chunks_done: int
    state: str  # pending, partial or done
    output: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_status(plan: Plan) -> list[JobRow]:
    """One JobRow per job, in plan order."""
    rows = []
    for job in plan.jobs:
        progress = read_progress(job)
        rows.append(
            JobRow(
                name=job.name,
                id=job.id,
                field=job.field,
                backend=job.settings.backend,
                duration=job.duration,
                frames=job.num_frames,
                chunks=progress.chunks_total,
                chunks_done=progress.chunks_done,
                state=progress.state,
                output=str(job.output),
            )
        )
    return rows
