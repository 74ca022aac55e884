"""`emo clean`: remove what no render needs any more.

Every render leaves its job's work dir (`<output_dir>/.emo/jobs/<id>/`: journal, chunks, state
files, encoded audio) so a later run resumes or skips it. Two kinds of it are dead weight:

- the work dirs no current job uses: a changed setting, portrait or audio gives a job a new id,
  and the old id's work dir is never read again. They are removed whole.
- the chunk store of a current job that is finished (its output and sidecar are the files its
  journal recorded): the chunks, the state files and the encoded audio are only read again if the
  output is lost. They are removed, unless `keep_current`; the journal stays, so the next render
  still skips the job (and renders it again, from scratch, if its output is deleted).

Outputs and sidecars are never touched. A work dir whose lease is held (a render is using it
right now, here or on another host) is left alone and reported; the others are claimed with a
lease first, so a render that starts meanwhile waits rather than writing into a folder being
emptied.

The work dirs under an output_dir are shared by every manifest that renders there: pass all of
them, or the jobs of the others count as unused.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emo_cli.execution.jobs import is_finished
from emo_cli.execution.lease import DEFAULT_TIMEOUT_S, JobLease, is_stale, read_lease
from emo_cli.execution.workdir import Journal, WorkDir
from emo_cli.media.formats import format_for
from emo_cli.planning.job import WORK_DIRNAME, Job, Plan


@dataclass(frozen=True)
class WorkDirEntry:
    """One work dir that no current job uses, or the chunk store of a finished one."""

    path: Path
    bytes: int
    holder: str | None = None  # who holds its lease (then it is kept), else None


@dataclass
class CleanReport:
    removed: list[WorkDirEntry] = field(default_factory=list)  # unused work dirs, removed whole
    emptied: list[WorkDirEntry] = field(default_factory=list)  # finished jobs' chunk stores
    held: list[WorkDirEntry] = field(default_factory=list)
    kept: int = 0  # work dirs of current jobs

    @property
    def freed_bytes(self) -> int:
        return sum(entry.bytes for entry in self.removed + self.emptied)

    def to_dict(self) -> dict:
        return {
            "removed": [{"path": str(e.path), "bytes": e.bytes} for e in self.removed],
            "emptied": [{"path": str(e.path), "bytes": e.bytes} for e in self.emptied],
            "held": [{"path": str(e.path), "bytes": e.bytes, "holder": e.holder} for e in self.held],
            "kept": self.kept,
            "freed_bytes": self.freed_bytes,
        }


def jobs_root(output_dir: Path) -> Path:
    return output_dir / WORK_DIRNAME / "jobs"


def _size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.lstat().st_size
        except OSError:
            continue
    return total


def clean_work_dirs(plans: Sequence[Plan], *, dry_run: bool = False, keep_current: bool = False) -> CleanReport:
    """Remove every work dir under the plans' output dirs that none of their jobs uses, and the
    chunk stores of their finished jobs unless `keep_current`.

    With `dry_run`, removes nothing and reports what would go.
    """
    current: dict[str, list[Job]] = {}
    for plan in plans:
        for job in plan.jobs:
            current.setdefault(job.id, []).append(job)
    report = CleanReport()
    for output_dir in sorted({plan.output_dir for plan in plans}):
        root = jobs_root(output_dir)
        if not root.is_dir():
            continue
        for work in sorted(root.iterdir()):
            if not work.is_dir() or work.is_symlink():
                continue
            if work.name in current:
                report.kept += 1
                if not keep_current:
                    _empty_if_finished(current[work.name], report, dry_run=dry_run)
                continue
            size = _size(work)
            holder = _live_holder(work) if dry_run else _remove(work)
            if holder is not None:
                report.held.append(WorkDirEntry(work, size, holder))
            else:
                report.removed.append(WorkDirEntry(work, size))
    return report


def _empty_if_finished(jobs: list[Job], report: CleanReport, *, dry_run: bool) -> None:
    """Drop the chunk store of a current work dir whose every job (jobs with identical content
    share one) is finished."""
    path = jobs[0].work_dir
    if not all(is_finished(job, Journal.load(path)) for job in jobs):
        return
    work = WorkDir(path, format_for(jobs[0].output))
    size = sum(file.stat().st_size for file in work.chunk_store_files())
    if not size:
        return
    if dry_run:
        holder = _live_holder(path)
    else:
        lease = JobLease.acquire(path, heartbeat_s=0)
        holder = None if lease is not None else getattr(read_lease(path), "holder", "another process")
        if lease is not None:
            try:
                journal = Journal.load(path)  # again, now that no render can change it
                if journal is not None and all(is_finished(job, journal) for job in jobs):
                    work.drop_chunk_store(journal)
                else:
                    size = 0
            finally:
                lease.release()
    if holder is not None:
        report.held.append(WorkDirEntry(path, size, holder))
    elif size:
        report.emptied.append(WorkDirEntry(path, size))


def _live_holder(work: Path) -> str | None:
    """Who holds `work`'s lease and is alive (a stale lease would be taken over)."""
    info = read_lease(work)
    if info is None or is_stale(info, host=socket.gethostname(), now=time.time(), timeout_s=DEFAULT_TIMEOUT_S):
        return None
    return info.holder


def _remove(work: Path) -> str | None:
    """Claim `work` and remove it; the live holder's name instead when it is in use."""
    lease = JobLease.acquire(work, heartbeat_s=0)
    if lease is None:
        info = read_lease(work)
        return info.holder if info is not None else "another process"
    shutil.rmtree(work)
    return None
