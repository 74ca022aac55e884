"""Static shards for array jobs (`--shard i/n`) and the order jobs are handed out in.

Shard i of n holds every n-th job in job-id order. Job ids are content addresses, so the
partition is the same on every machine that plans the same manifest, whatever order the
manifest lists its jobs in, and shard sizes differ by at most one job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from emo_cli.errors import UsageError


class Schedulable(Protocol):
    """What scheduling needs to know of a job (`emo_cli.planning.job.Job` has all three)."""

    @property
    def id(self) -> str: ...

    @property
    def duration(self) -> float: ...

    @property
    def work_dir(self) -> Path: ...


J = TypeVar("J", bound=Schedulable)


def parse_shard(spec: str) -> tuple[int, int]:
    """`"i/n"` -> (i, n), with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if match is None:
        raise UsageError(f"--shard {spec}: expected INDEX/COUNT such as 0/4 (shards are numbered from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise UsageError(f"--shard {spec}: the shard count must be at least 1")
    if index >= count:
        raise UsageError(
            f"--shard {spec}: the index must be in 0..{count - 1} (shards are numbered from 0; "
            "with Slurm use --array=0-<count-1>)"
        )
    return index, count


def select_shard(jobs: Iterable[J], spec: str) -> list[J]:
    """The jobs of shard `spec` ("i/n"), in their given order.

    Over i = 0..n-1 the shards cover every job exactly once. Jobs that share an id (the same
    render asked for twice) fall in the same shard.
    """
    index, count = parse_shard(spec)
    jobs = list(jobs)
    order = sorted({job.id for job in jobs})
    shard_of = {job_id: position % count for position, job_id in enumerate(order)}
    return [job for job in jobs if shard_of[job.id] == index]


def longest_first(jobs: Iterable[J]) -> list[J]:
    """Jobs by duration, longest first, then by id: the long ones start early and do not end
    the run alone on one device while the others sit idle."""
    return sorted(jobs, key=lambda job: (-job.duration, job.id))
