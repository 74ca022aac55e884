"""Jobs with identical content share their chunks, never their output; every output comes with
its sidecar, and a job is done only when both are the files the journal recorded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from factories import PLUGINS, PORTRAIT, decoded_frames, make_job, make_plan, write_wav

from emo_cli.backends import get_backend_class
from emo_cli.execution import render, render_job
from emo_cli.execution.executors import LocalPoolExecutor
from emo_cli.execution.journal import Journal
from emo_cli.fsutil import sha256_file
from emo_cli.provenance.tags import sidecar_path

pytestmark = pytest.mark.usefixtures("test_backends")


@pytest.fixture
def voice(tmp_path) -> Path:
    return write_wav(tmp_path / "assets" / "voice.wav", 0.8)  # 20 frames: two chunks of 10


def twins(tmp_path: Path, voice: Path):
    """Two portrait files with the same bytes (so one job id) rendered to two outputs, and one
    pair listed twice with different outputs."""
    copy = tmp_path / "assets" / "copy_of_astronaut.jpg"
    shutil.copyfile(PORTRAIT, copy)
    out = tmp_path / "out"
    return [make_job(out, PORTRAIT, voice), make_job(out, copy, voice),
            make_job(out, PORTRAIT, voice, output="again/voice.mp4", name="astronaut/voice#2")]  # fmt: skip


def assert_every_output(jobs) -> None:
    assert len({job.id for job in jobs}) == 1 and len({job.output for job in jobs}) == 3
    reference = decoded_frames(jobs[0].output)
    for job in jobs:
        assert job.output.is_file() and sidecar_path(job.output).is_file(), job.output
        assert json.loads(sidecar_path(job.output).read_text())["output_sha256"] == sha256_file(job.output)
        assert len(decoded_frames(job.output)) == len(reference) == 20


def test_jobs_with_identical_content_each_get_their_output_inline(tmp_path, voice):
    jobs = twins(tmp_path, voice)
    summary = render(make_plan(tmp_path / "out", jobs))
    assert [r.status for r in summary.results] == ["done"] * 3
    assert [r.chunks_rendered for r in summary.results] == [2, 0, 0]  # the work is shared
    assert_every_output(jobs)
    # A second run finds every output done: no output pushes another's out of the journal.
    again = render(make_plan(tmp_path / "out", jobs))
    assert [r.status for r in again.results] == ["skipped"] * 3


def test_jobs_with_identical_content_each_get_their_output_in_a_pool(tmp_path, voice, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    jobs = twins(tmp_path, voice)
    summary = render(make_plan(tmp_path / "out", jobs), executor=LocalPoolExecutor("cpu:2", 0))
    assert [(r.status, r.output) for r in summary.results] == [("done", job.output) for job in jobs]
    assert_every_output(jobs)


def test_a_deleted_or_edited_sidecar_is_written_again(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    backend = get_backend_class("testbars")()
    render_job(job, backend)
    sidecar = sidecar_path(job.output)
    seed = json.loads(sidecar.read_text())["emo_seed"]

    def matches() -> bool:
        doc = json.loads(sidecar.read_text())
        return doc["output_sha256"] == sha256_file(job.output) and doc["emo_seed"] == seed

    sidecar.unlink()
    result = render_job(job, backend)
    assert result.status == "done" and result.chunks_rendered == 0 and matches()

    doc = json.loads(sidecar.read_text())
    doc["emo_seed"] = seed + 1
    sidecar.write_text(json.dumps(doc))
    assert render_job(job, backend).status == "done" and matches()
    assert render_job(job, backend).status == "skipped"


def test_a_journal_from_before_sidecars_were_recorded_publishes_once_more(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    backend = get_backend_class("testbars")()
    render_job(job, backend)
    path = Journal.path_for(job.work_dir)
    doc = json.loads(path.read_text())
    del doc["outputs"]
    path.write_text(json.dumps(doc))
    assert render_job(job, backend).status == "done"
    assert render_job(job, backend).status == "skipped"
