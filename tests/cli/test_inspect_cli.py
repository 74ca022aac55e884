"""`emo inspect`: provenance from the video file alone; exit 1 when there is none."""

from __future__ import annotations

import json

import pytest
from factories import SPEECH, make_job, write_wav
from typer.testing import CliRunner

from emo_cli.backends import get_backend_class
from emo_cli.cli import app
from emo_cli.errors import MediaError
from emo_cli.execution import render_job
from emo_cli.provenance.tags import read_tags, sidecar_path

runner = CliRunner()


@pytest.fixture
def rendered(tmp_path, test_backends):
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 0.4), seed=11)
    render_job(job, get_backend_class("testbars")())
    sidecar_path(job.output).unlink()  # the file alone must carry the facts
    return job


def test_inspect_prints_the_tags(rendered):
    result = runner.invoke(app, ["inspect", str(rendered.output)])
    assert result.exit_code == 0, result.output
    for fact in ("ai_generated", "true", "testbars", rendered.id, rendered.portrait.sha256[:20]):
        assert fact in result.output


def test_inspect_json(rendered):
    result = runner.invoke(app, ["inspect", "--json", str(rendered.output)])
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["emo_provenance"] is True
    assert doc["tags"]["emo_job_id"] == rendered.id
    assert doc["tags"]["emo_audio_sha256"] == rendered.audio.sha256
    assert json.loads(doc["tags"]["emo_settings"])["seed"] == 11


def test_inspect_says_when_a_file_has_no_emo_provenance():
    result = runner.invoke(app, ["inspect", str(SPEECH)])
    assert result.exit_code == 1
    assert "has no emo provenance" in result.output
    as_json = runner.invoke(app, ["inspect", "--json", str(SPEECH)])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["emo_provenance"] is False


def test_inspect_missing_file_is_a_usage_error(tmp_path):
    assert runner.invoke(app, ["inspect", str(tmp_path / "nope.mp4")]).exit_code == 2


def test_inspect_unreadable_file_names_it(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(MediaError, match="garbage.mp4"):
        read_tags(garbage)
