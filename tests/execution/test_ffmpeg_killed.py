"""An ffmpeg killed by a signal (the out-of-memory killer) is reported as killed, and a pool
retries its job like one whose worker died, from the last committed chunk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from factories import PLUGINS, make_job, make_plan, write_wav

from emo_cli.execution import render
from emo_cli.execution.executors import LocalPoolExecutor
from emo_cli.media.ffmpeg import ffmpeg_exe

pytestmark = pytest.mark.usefixtures("test_backends")


@pytest.fixture
def killed_once(tmp_path, monkeypatch) -> Path:
    """FFMPEG_BINARY: the real ffmpeg, except that the first encode of chunk 1 is SIGKILLed."""
    real = ffmpeg_exe()
    mark = tmp_path / "killed-once"
    script = tmp_path / "ffmpeg"
    script.write_text(f"""#!/bin/sh
case "$*" in *00001.mp4*) if [ ! -e "{mark}" ]; then : > "{mark}"; kill -KILL $$; fi;; esac
exec "{real}" "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FFMPEG_BINARY", str(script))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    return mark


def test_a_killed_ffmpeg_is_reported_as_killed(tmp_path, killed_once):
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 1.5))
    (result,) = render(make_plan(job.output_dir, [job])).results
    assert result.status == "failed" and killed_once.exists()
    assert "ffmpeg was killed by SIGKILL (the system may have run out of memory)" in result.error, result.error
    assert "(no message)" not in result.error


def test_a_pool_retries_a_job_whose_ffmpeg_was_killed(tmp_path, killed_once):
    job = make_job(tmp_path / "out", audio=write_wav(tmp_path / "voice.wav", 1.5))
    events: list[dict] = []
    summary = render(make_plan(job.output_dir, [job]), events=events.append, executor=LocalPoolExecutor("cpu:1", 1))
    assert [r.status for r in summary.results] == ["done"] and killed_once.exists()
    retrying = [e for e in events if e["event"] == "job_retrying"]
    assert len(retrying) == 1 and "ffmpeg was killed by SIGKILL" in retrying[0]["cause"]
    assert summary.results[0].chunks_rendered == 3  # chunk 0 was committed before the kill
