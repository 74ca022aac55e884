"""Outputs are owned: one job per path, the truth in status, re-muxes that repeat their bytes,
and journals that survive a moved project."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from factories import make_job, make_plan, write_wav

from emo_cli.errors import RenderError
from emo_cli.execution import render
from emo_cli.execution.status import plan_status
from emo_cli.execution.workdir import Journal
from emo_cli.fsutil import sha256_file
from emo_cli.provenance.tags import sidecar_path

pytestmark = pytest.mark.usefixtures("test_backends")


@pytest.fixture
def voice(tmp_path):
    return write_wav(tmp_path / "assets" / "voice.wav", 0.6)  # 15 frames: chunks 10, 5


def unsigned(job):
    return dataclasses.replace(job, settings=dataclasses.replace(job.settings, sign=False))


def test_a_new_revision_is_refused_over_the_old_ones_output_naming_both_jobs(tmp_path, voice):
    out = tmp_path / "out"
    old = unsigned(make_job(out, audio=voice, name="old"))
    new = unsigned(make_job(out, audio=voice, name="new", seed=1))
    assert old.output == new.output and old.id != new.id
    assert render(make_plan(out, [old]), executor="inline").exit_code == 0
    before = old.output.read_bytes()

    with pytest.raises(RenderError) as caught:
        render(make_plan(out, [new]), executor="inline")
    message = str(caught.value)
    assert "made by job old" in message and old.id[:12] in message
    assert "not by new" in message and new.id[:12] in message
    assert "{job}" in message and "--overwrite" in message
    assert old.output.read_bytes() == before  # nothing rendered, nothing replaced
    assert not new.work_dir.exists()

    assert render(make_plan(out, [new]), executor="inline", overwrite=True).exit_code == 0
    assert json.loads(sidecar_path(new.output).read_text())["emo_job_id"] == new.id
    rows = {row.name: row for row in plan_status(make_plan(out, [old, new]))}
    assert rows["old"].state == "replaced" and rows["old"].output_owner == "new"
    assert rows["new"].state == "done" and rows["new"].output_owner is None
    # The old manifest rendered again is refused too, rather than muxing its file back.
    with pytest.raises(RenderError, match="made by job new"):
        render(make_plan(out, [old]), executor="inline")


def test_a_file_no_job_made_is_not_owned(tmp_path, voice):
    out = tmp_path / "out"
    job = unsigned(make_job(out, audio=voice))
    job.output.parent.mkdir(parents=True)
    job.output.write_bytes(b"someone's draft")
    assert render(make_plan(out, [job]), executor="inline").exit_code == 0
    assert plan_status(make_plan(out, [job]))[0].state == "done"


def test_publishing_a_finished_job_again_writes_the_same_bytes(tmp_path, voice):
    out = tmp_path / "out"
    job = unsigned(make_job(out, audio=voice))
    render(make_plan(out, [job]), executor="inline")
    first, created = job.output.read_bytes(), Journal.load(job.work_dir).created
    sidecar = sidecar_path(job.output).read_text()
    assert created and created.endswith("Z")
    job.output.unlink()
    summary = render(make_plan(out, [job]), executor="inline")
    assert summary.results[0].status == "done" and summary.results[0].chunks_rendered == 0
    assert job.output.read_bytes() == first
    assert sidecar_path(job.output).read_text() == sidecar
    assert Journal.load(job.work_dir).created == created


def test_a_moved_project_stays_done(tmp_path, voice):
    job = unsigned(make_job(tmp_path / "out", audio=voice))
    render(make_plan(tmp_path / "out", [job]), executor="inline")
    assert Journal.load(job.work_dir).output == "astronaut/voice.mp4"  # relative to output_dir
    shutil.move(tmp_path / "out", tmp_path / "moved")
    moved = unsigned(make_job(tmp_path / "moved", audio=voice))
    assert moved.id == job.id
    digest = sha256_file(moved.output)
    summary = render(make_plan(tmp_path / "moved", [moved]), executor="inline")
    assert summary.results[0].status == "skipped"
    assert sha256_file(moved.output) == digest
    assert plan_status(make_plan(tmp_path / "moved", [moved]))[0].state == "done"
