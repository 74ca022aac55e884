"""`--shard i/n` and longest-first order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pool_jobs import FakeJob

from emo_cli.errors import UsageError
from emo_cli.execution.shards import longest_first, parse_shard, select_shard
from emo_cli.planning.job import Job, Settings, Source


def jobs_named(ids: list[str]) -> list[FakeJob]:
    return [FakeJob(id=i, work_dir=Path("out") / i) for i in ids]


@given(
    ids=st.lists(st.text("0123456789abcdef", min_size=4, max_size=12), max_size=40, unique=True),
    count=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
def test_shards_cover_every_job_exactly_once_whatever_the_manifest_order(ids, count, seed):
    jobs = jobs_named(ids)
    shuffled = jobs[:]
    random.Random(seed).shuffle(shuffled)
    shards = [select_shard(jobs, f"{i}/{count}") for i in range(count)]
    seen = [job.id for shard in shards for job in shard]
    assert sorted(seen) == sorted(ids)  # every job, once
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    for i in range(count):  # the same partition from a manifest listing the jobs in another order
        assert {j.id for j in select_shard(shuffled, f"{i}/{count}")} == {j.id for j in shards[i]}


def test_a_shard_keeps_the_given_order_and_repeated_ids_stay_together():
    jobs = jobs_named(["d", "a", "c", "b", "a"])
    assert [j.id for j in select_shard(jobs, "0/2")] == ["a", "c", "a"]
    assert [j.id for j in select_shard(jobs, "1/2")] == ["d", "b"]
    assert [j.id for j in select_shard(jobs, "0/1")] == ["d", "a", "c", "b", "a"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3", "expected INDEX/COUNT such as 0/4"),
        ("a/4", "expected INDEX/COUNT"),
        ("-1/4", "expected INDEX/COUNT"),
        ("4/4", r"the index must be in 0\.\.3 \(shards are numbered from 0"),
        ("0/0", "the shard count must be at least 1"),
    ],
)
def test_bad_shard_specs(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_shard(spec)


def test_parse_shard_accepts_spaces():
    assert parse_shard(" 2 / 8 ") == (2, 8)


def test_longest_first_then_by_id(tmp_path):
    jobs = [
        FakeJob(id="b", work_dir=tmp_path, duration=3.0),
        FakeJob(id="c", work_dir=tmp_path, duration=9.5),
        FakeJob(id="a", work_dir=tmp_path, duration=3.0),
        FakeJob(id="d", work_dir=tmp_path, duration=0.5),
    ]
    assert [j.id for j in longest_first(jobs)] == ["c", "a", "b", "d"]


def test_planning_jobs_are_schedulable(tmp_path):
    def source(name: str) -> Source:
        return Source(name=name, path=tmp_path / name, sha256="0" * 64, field=f"x.{name}")

    settings = Settings(backend="warp", fps=25, resolution=512, seed=0, chunk_frames=50)
    jobs = [
        Job(
            id=f"{n:064x}",
            name=f"p/{n}",
            portrait=source("p"),
            audio=source(str(n)),
            settings=settings,
            output=tmp_path / f"{n}.mp4",
            output_dir=tmp_path,
            manifest=tmp_path / "m.yaml",
            field=f"jobs[{n}]",
            duration=float(n),
            backend_version="1",
            weights_identity="",
        )
        for n in range(5)
    ]
    assert [j.duration for j in longest_first(jobs)] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert sum(len(select_shard(jobs, f"{i}/2")) for i in range(2)) == 5
    assert jobs[0].work_dir.name == jobs[0].id
