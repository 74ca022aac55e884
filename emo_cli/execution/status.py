"""Per-job progress of a plan, read from the journals (no rendering, no hashing of chunks).

The rows `emo plan` and `emo status` print. A job is done only while the file at its output path
is the one its journal recorded (by sha256): when another job's render has replaced it, the row
says `replaced` and names that job (`output_owner`), instead of calling the old job done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from emo_cli.execution.ownership import foreign_owner
from emo_cli.execution.workdir import Journal, read_progress
from emo_cli.fsutil import sha256_file
from emo_cli.planning.job import Job, Plan


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
    state: str  # pending, partial, done, or replaced (by another job's output at the same path)
    output: str
    output_owner: str | None = None  # another job whose video is at `output` now (its name), if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_status(plan: Plan) -> list[JobRow]:
    """One JobRow per job, in plan order."""
    rows = []
    for job in plan.jobs:
        progress = read_progress(job)
        state, owner = _output_truth(job, progress.state)
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
                state=state,
                output=str(job.output),
                output_owner=owner,
            )
        )
    return rows


def _output_truth(job: Job, state: str) -> tuple[str, str | None]:
    """The job's state checked against the file at its output path, and the other job that made
    that file (by its sidecar and hash), if any."""
    owner = foreign_owner(job)  # hashes the output only when its sidecar names another job
    if owner is None:
        return state, None
    foreign = owner.job
    if state == "done":
        journal = Journal.load(job.work_dir)
        if journal is None or journal.output_sha256 != sha256_file(job.output):
            return "replaced", foreign
    # An output altered by hand (no other job made it) stays `done` here, as the journal says:
    # `emo report` measures it and says it is unreadable; `emo render` muxes it again.
    return state, foreign
