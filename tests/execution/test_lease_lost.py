"""A render whose lease was taken over while it was stalled stops at its next journal write or
publish, without touching the files of the render that took over; the job counts as held."""

from __future__ import annotations

import json
import os

import pytest
from factories import PLUGINS, make_job, make_plan, write_wav

from emo_cli.backends import get_backend_class
from emo_cli.execution import render, render_job
from emo_cli.execution.executors import LocalPoolExecutor
from emo_cli.execution.journal import Journal
from emo_cli.execution.lease import JobLease, LeaseInfo, claim_next, read_current, rendering_under
from emo_cli.execution.results import JobFailed

pytestmark = pytest.mark.usefixtures("test_backends")


def take_over(work_dir) -> LeaseInfo:
    """What another render does once this one's heartbeat is older than the timeout."""
    generation, _ = read_current(work_dir)
    info = LeaseInfo(host="other-host", pid=4242, token="newholder", started=1.0, heartbeat=9e9)
    assert claim_next(work_dir, generation, info)
    return info


def test_a_render_that_lost_its_lease_stops_before_its_next_journal_write(tmp_path):
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 1.5))
    lease = JobLease.acquire(job.work_dir, heartbeat_s=0)
    taken: list[str] = []

    def stall_after_first_chunk(chunk) -> None:
        if chunk.index == 0:
            take_over(job.work_dir)
            taken.append(Journal.path_for(job.work_dir).read_text())

    with rendering_under(job.work_dir, lease.info.token), pytest.raises(JobFailed) as failed:
        render_job(job, get_backend_class("testbars")(), after_chunk=[stall_after_first_chunk])
    assert "other-host:4242 took the job over" in str(failed.value)
    # Nothing written after the takeover: the journal is as the new holder found it, no output.
    assert Journal.path_for(job.work_dir).read_text() == taken[0]
    assert sorted(Journal.load(job.work_dir).chunks) == [0] and not job.output.exists()
    assert read_current(job.work_dir)[1].token == "newholder"
    lease.release()  # gives back nothing: the lease is not ours any more
    assert read_current(job.work_dir)[1].token == "newholder" and not read_current(job.work_dir)[1].released


def test_a_publish_after_the_takeover_is_not_made(tmp_path):
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 0.4))  # one chunk
    lease = JobLease.acquire(job.work_dir, heartbeat_s=0)

    def stall(chunk) -> None:
        take_over(job.work_dir)

    with rendering_under(job.work_dir, lease.info.token), pytest.raises(JobFailed, match="took the job over"):
        render_job(job, get_backend_class("testbars")(), after_chunk=[stall])
    assert not job.output.exists() and not job.output.with_name(job.output.name + ".provenance.json").exists()


def test_the_pool_reports_a_job_taken_over_as_held_and_finishes_it_later(tmp_path, monkeypatch):
    """The pool's worker finds the lease taken over at its next journal write; the job is held
    until the other render lets go, then found done (here the other render gives up at once)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 1.5))
    # A lease of another render that appears (released) while the pool renders: the pool's
    # claim is no longer current, as after a takeover; released, so the retry may claim again.
    events: list[dict] = []

    def on_event(event: dict) -> None:
        events.append(event)
        if event["event"] == "chunk_done" and sum(e["event"] == "chunk_done" for e in events) == 1:
            info = take_over(job.work_dir)
            path = job.work_dir / f"lease.{read_current(job.work_dir)[0]:08d}.json"
            path.write_text(json.dumps({**info.__dict__, "released": True}))

    summary = render(make_plan(job.output_dir, [job]), events=on_event, executor=LocalPoolExecutor("cpu:1", 0))
    held = [e for e in events if e["event"] == "job_held"]
    assert held and held[0]["holder"] in ("another process", "other-host:4242")
    assert [r.status for r in summary.results] == ["done"] and job.output.is_file()
