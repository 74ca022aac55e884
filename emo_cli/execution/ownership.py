"""Who owns an output path: the job whose published file is on disk there.

A path belongs to one job at a time. The file's own sidecar (`<output>.provenance.json`, written
by `publish` with the output's sha256) names the job that made it; when the file on disk still
has that hash, that job owns the path. A render refuses to publish a different job over another
job's output unless asked to overwrite (`emo render --overwrite`), so changing a setting under
the default template `{portrait}/{audio}.mp4` no longer replaces the previous revision silently:
`{settings}` or `{job}` in the template lets revisions coexist.

A file with no sidecar, or whose sidecar's hash no longer matches, was not made by a job as it
stands (a user's file, or an output altered since): it is not owned and is replaced as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from emo_cli.errors import RenderError
from emo_cli.fsutil import sha256_file
from emo_cli.planning.job import Job
from emo_cli.provenance.tags import sidecar_path


@dataclass(frozen=True)
class OutputOwner:
    """The job that made the file now at an output path."""

    job_id: str
    job: str  # its name in its manifest


def claimed_by(path: Path) -> str | None:
    """The job id the sidecar beside `path` names (cheap: the output is not hashed)."""
    try:
        job_id = json.loads(sidecar_path(path).read_text())["emo_job_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return job_id if isinstance(job_id, str) else None


def output_owner(path: Path, digest: str | None = None) -> OutputOwner | None:
    """The job that made the file at `path`, by its sidecar and the file's sha256 (`digest`, if
    already computed); None if there is no file, no readable sidecar or the hash differs."""
    try:
        doc = json.loads(sidecar_path(path).read_text())
        job_id, name, recorded = doc["emo_job_id"], doc["emo_job"], doc["output_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(job_id, str) or not isinstance(recorded, str):
        return None
    try:
        actual = digest or sha256_file(path)
    except OSError:
        return None
    return OutputOwner(job_id, str(name)) if actual == recorded else None


def foreign_owner(job: Job) -> OutputOwner | None:
    """The other job whose output sits at `job.output`, if any (None when free or `job`'s own)."""
    if not job.output.is_file() or claimed_by(job.output) in (None, job.id):
        return None  # only a sidecar naming another job is worth hashing the output for
    owner = output_owner(job.output)
    return owner if owner is not None and owner.job_id != job.id else None


def check_output_ownership(jobs: Iterable[Job], *, overwrite: bool = False) -> None:
    """Refuse to render jobs whose output path holds another job's output, naming every such
    pair at once, before any compute is spent.

    Raises:
        RenderError: some outputs belong to other jobs and `overwrite` is off.
    """
    if overwrite:
        return
    clashes = []
    for job in jobs:
        owner = foreign_owner(job)
        if owner is not None:
            clashes.append(f"  {job.output}: made by job {owner.job} ({owner.job_id[:12]}), "
                           f"not by {job.name} ({job.id[:12]}) which {job.field} now asks for")  # fmt: skip
    if clashes:
        count = len(clashes)
        raise RenderError(
            f"{count} output{'s' if count != 1 else ''} would replace another job's video:\n" + "\n".join(clashes)
            + "\nPut {settings} (or {job}) in the output template so each revision keeps its own file "
            "(e.g. output: '{portrait}/{audio}-{settings}.mp4'), or run `emo render --overwrite` (or set policy: {overwrite: true} in the manifest) to replace them."
        )
