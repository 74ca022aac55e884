"""Damaged state in a job's work dir is detected, reported once and replaced; chunks that still
pass their hash are kept; planning and status never crash on it."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from factories import make_job, make_plan, write_wav

from emo_cli.backends import get_backend_class
from emo_cli.execution import read_progress, render_job
from emo_cli.execution.journal import Journal
from emo_cli.execution.lease import JobLease, current_generation, read_current
from emo_cli.execution.status import plan_status
from emo_cli.execution.workdir import lease_name

pytestmark = pytest.mark.usefixtures("test_backends")


@pytest.fixture
def job(tmp_path):
    voice = write_wav(tmp_path / "assets" / "voice.wav", 1.5)  # 38 frames: chunks 10,10,10,8
    return make_job(tmp_path / "out", audio=voice)


def render(job, events=None):
    return render_job(job, get_backend_class("testbars")(), events=(events if events is not None else []).append)


def repaired(events) -> list[str]:
    return [e["message"] for e in events if e["event"] == "state_repaired"]


@pytest.mark.parametrize("damage", [b"[]", b'{"format": 1, "job_id": 7}', b"\xff\xfe not json", b"null"])
def test_a_journal_of_the_wrong_shape_is_reported_once_and_replaced(job, damage):
    render(job)
    path = Journal.path_for(job.work_dir)
    path.write_bytes(damage)
    assert read_progress(job).state == "pending"  # emo plan / emo status: no crash
    assert [row.state for row in plan_status(make_plan(job.output_dir, [job]))] == ["pending"]
    events: list[dict] = []
    result = render(job, events)
    assert result.status == "done" and result.chunks_rendered == 4
    assert len(repaired(events)) == 1 and str(path) in repaired(events)[0]
    events.clear()
    assert render(job, events).status == "skipped" and repaired(events) == []


def test_damaged_chunk_records_are_dropped_and_the_other_chunks_kept(job):
    render(job)
    path = Journal.path_for(job.work_dir)
    doc = json.loads(path.read_text())
    doc["chunks"]["1"] = {"index": "one"}
    doc["chunks"]["2"]["segment_sha256"] = 42
    path.write_text(json.dumps(doc))
    job.output.unlink()
    events: list[dict] = []
    result = render(job, events)
    assert result.status == "done" and result.chunks_rendered == 2
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [1, 2]
    assert "2 damaged records" in repaired(events)[0]


def test_a_journal_that_is_a_folder_is_replaced(job):
    render(job)
    path = Journal.path_for(job.work_dir)
    path.unlink()
    (path / "inner").mkdir(parents=True)
    assert read_progress(job).state == "pending"
    events: list[dict] = []
    assert render(job, events).status == "done" and "is a folder" in repaired(events)[0]
    assert path.is_file()


def test_a_chunks_entry_that_is_a_file_is_replaced(job):
    render(job)
    shutil.rmtree(job.work_dir / "chunks")
    (job.work_dir / "chunks").write_text("not a folder")
    job.output.unlink()
    result = render(job)
    assert result.status == "done" and result.chunks_rendered == 4


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[]", b'{"host": "h", "pid": 1, "token": "t", '
                                     b'"started": NaN, "heartbeat": NaN}', None])  # fmt: skip
def test_an_unreadable_lease_is_held_until_its_file_is_old_then_taken_over(tmp_path, content):
    work = tmp_path / "work"
    work.mkdir()
    lease = work / lease_name(3)
    if content is None:
        lease.mkdir()  # a folder under a lease's name
    else:
        lease.write_bytes(content)
    assert read_current(work)[0] == 3
    assert JobLease.acquire(work, heartbeat_s=0) is None  # it may be a live holder's: wait
    os.utime(lease, (1, 1))  # older than any timeout
    claim = JobLease.acquire(work, heartbeat_s=0)
    assert claim is not None and claim.generation == 4 and not lease.exists()
    claim.release()


def test_a_heartbeat_from_the_future_does_not_hold_a_job_forever(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    lease = work / lease_name(1)
    lease.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t", "started": 1e12, "heartbeat": 1e12}))
    os.utime(lease, (1, 1))
    claim = JobLease.acquire(work, heartbeat_s=0)
    assert claim is not None and claim.generation == 2
    claim.release()


def test_lease_numbers_go_on_past_eight_digits(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / lease_name(99999999)).write_text(json.dumps(
        {"host": "h", "pid": 1, "token": "t", "started": 1.0, "heartbeat": 1.0, "released": True}))  # fmt: skip
    first = JobLease.acquire(work, heartbeat_s=0)
    assert first is not None and first.generation == 100000000 and first.path.name == "lease.100000000.json"
    assert current_generation(work) == 100000000
    assert JobLease.acquire(work, heartbeat_s=0) is None  # held: the new number counts
    first.release()
    second = JobLease.acquire(work, heartbeat_s=0)
    assert second is not None and second.generation == 100000001
    assert sorted(p.name for p in work.iterdir()) == ["lease.100000001.json"]
    second.release()


def test_a_job_renders_past_a_damaged_lease_left_by_a_dead_holder(job):
    job.work_dir.mkdir(parents=True)
    lease = job.work_dir / lease_name(99999999)
    lease.write_bytes(b"\x80\x81 not utf-8")
    os.utime(lease, (1, 1))
    from emo_cli.execution import render as render_plan

    summary = render_plan(make_plan(job.output_dir, [job]))
    assert [r.status for r in summary.results] == ["done"] and job.output.is_file()
