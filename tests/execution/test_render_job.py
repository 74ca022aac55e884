"""The render loop in-process: chunking, resume from damaged checkpoints, failures, events."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from factories import PORTRAIT, decoded_frames, make_job, make_plan, write_wav

from emo_cli.backends import get_backend_class
from emo_cli.backends.base import decode_state
from emo_cli.execution import JobFailed, read_progress, render, render_job
from emo_cli.execution.jobs import AUDIO_NAME
from emo_cli.execution.journal import Journal, segment_name, state_name
from emo_cli.fsutil import sha256_file
from emo_cli.provenance.tags import read_tags, sidecar_path

pytestmark = pytest.mark.usefixtures("test_backends")


@pytest.fixture
def voice(tmp_path) -> Path:
    return write_wav(tmp_path / "assets" / "voice.wav", 1.5)  # 38 frames at 25 fps: chunks 10,10,10,8


def backend():
    return get_backend_class("testbars")()


def test_render_job_writes_every_frame_and_a_journal(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    events = []
    result = render_job(job, backend(), events=events.append)
    assert result.status == "done" and result.chunks_rendered == 4 and job.num_frames == 38
    frames = decoded_frames(job.output)
    assert len(frames) == 38 and frames[0].shape == (64, 64, 3)
    assert [e["event"] for e in events] == ["job_started"] + ["chunk_done"] * 4 + ["job_done"]
    assert [e["frames_done"] for e in events if e["event"] == "chunk_done"] == [10, 20, 30, 38]
    journal = Journal.load(job.work_dir)
    assert sorted(journal.chunks) == [0, 1, 2, 3]
    assert journal.output_sha256 == sha256_file(job.output)
    assert read_progress(job).state == "done"
    # Nothing outside output_dir: the output, its sidecar, and the work dir.
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()} - {voice.relative_to(tmp_path)}
    assert all(p.parts[0] == "out" for p in written)


def test_finished_job_is_skipped_and_no_resume_renders_again(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    render_job(job, backend())
    first = decoded_frames(job.output)
    events = []
    assert render_job(job, backend(), events=events.append).status == "skipped"
    assert events == [{"event": "job_skipped", "job_id": job.id, "job": job.name, "output": str(job.output),
                       "reason": "already done", "frames": 38}]  # fmt: skip
    again = render_job(job, backend(), resume=False)
    assert again.status == "done" and again.chunks_rendered == 4
    assert all(np.array_equal(a, b) for a, b in zip(first, decoded_frames(job.output), strict=True))


def test_an_altered_output_is_muxed_again_from_the_chunks(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    render_job(job, backend())
    job.output.write_bytes(b"not the video any more")
    result = render_job(job, backend())
    assert result.status == "done" and result.chunks_rendered == 0
    assert len(decoded_frames(job.output)) == 38


def decoded_audio(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().ravel() for frame in container.decode(audio=0)])


def test_the_encoded_audio_is_reused_by_a_new_mux_and_encoded_again_when_damaged(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    render_job(job, backend())
    aac = job.work_dir / AUDIO_NAME
    assert Journal.load(job.work_dir).audio_sha256 == sha256_file(aac)
    sound = decoded_audio(job.output)
    assert abs(sound.size / 16000 - 1.5) < 0.05
    written = aac.stat().st_mtime_ns
    job.output.write_bytes(b"not the video any more")
    render_job(job, backend())
    assert aac.stat().st_mtime_ns == written  # copied into the new mux, not encoded again
    aac.write_bytes(aac.read_bytes()[:500])
    job.output.write_bytes(b"not the video any more")
    render_job(job, backend())
    assert Journal.load(job.work_dir).audio_sha256 == sha256_file(aac)
    assert np.array_equal(decoded_audio(job.output), sound)


def test_state_matters_for_the_test_backend(tmp_path, voice):
    """Guard for the resume tests: a wrong state must change the frames."""
    job = make_job(tmp_path / "out", audio=voice)
    render_job(job, backend())
    renderer = backend().start_job(_job_input(job))
    good = renderer.render_chunk(10, 10, decode_state((job.work_dir / state_name(0)).read_bytes()))
    wrong = renderer.render_chunk(10, 10, renderer.initial_state())
    assert not np.array_equal(good.frames, wrong.frames)


@pytest.mark.parametrize(
    "damage", ["truncate_segment", "delete_segment", "flip_state", "flip_state_and_next_segment", "delete_journal_entry"]
)
def test_damaged_chunk_is_rendered_again_and_the_video_is_identical(tmp_path, voice, damage):
    job = make_job(tmp_path / "out", audio=voice)
    render_job(job, backend())
    reference = decoded_frames(job.output)
    job.output.unlink()
    work = job.work_dir
    if damage == "truncate_segment":
        segment = work / segment_name(1)
        segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
        redone = [1]
    elif damage == "delete_segment":
        (work / segment_name(2)).unlink()
        redone = [2]
    elif damage == "flip_state":
        # Chunk 1's state is bad: chunk 1 is rendered again from chunk 0's state, and chunk 2
        # (whose own files are intact) is reused.
        state = bytearray((work / state_name(1)).read_bytes())
        state[len(state) // 2] ^= 0xFF
        (work / state_name(1)).write_bytes(bytes(state))
        redone = [1]
    elif damage == "flip_state_and_next_segment":
        # Chunk 2 needs chunk 1's state, which is bad: both are rendered again, chunk 2 from the
        # state chunk 1 has just produced; chunk 3 (intact) is reused.
        state = bytearray((work / state_name(1)).read_bytes())
        state[-10] ^= 0x01
        (work / state_name(1)).write_bytes(bytes(state))
        (work / segment_name(2)).write_bytes(b"")
        redone = [1, 2]
    else:
        journal = json.loads((work / "journal.json").read_text())
        del journal["chunks"]["3"]
        (work / "journal.json").write_text(json.dumps(journal))
        redone = [3]
    events = []
    result = render_job(job, backend(), events=events.append)
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == redone
    assert result.chunks_rendered == len(redone)
    assert events[0]["chunks_reused"] == 4 - len(redone)
    resumed = decoded_frames(job.output)
    assert len(resumed) == len(reference)
    assert all(np.array_equal(a, b) for a, b in zip(reference, resumed, strict=True))


def test_a_changed_input_is_a_different_job_in_its_own_work_dir(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    render_job(job, backend())
    other_voice = write_wav(voice, 1.5, seed=1)  # same name and length, different bytes
    changed = make_job(tmp_path / "out", audio=other_voice)
    assert changed.id != job.id and changed.work_dir != job.work_dir
    assert render_job(changed, backend()).chunks_rendered == 4


def test_run_keeps_going_past_failed_jobs_and_names_the_field(tmp_path, voice):
    broken = tmp_path / "assets" / "broken.wav"
    broken.write_bytes(b"RIFF" + os.urandom(64))
    jobs = [
        make_job(tmp_path / "out", audio=broken, name="astronaut/broken", duration=1.0),
        make_job(tmp_path / "out", audio=voice, name="astronaut/noface", options={"reject_portrait": True}),
        make_job(tmp_path / "out", audio=voice, name="astronaut/crash", options={"fail_at_frame": 15},
                 output="crash.mp4"),
        make_job(tmp_path / "out", audio=voice, name="astronaut/voice", seed=5),
    ]  # fmt: skip
    cls = get_backend_class("testbars")
    before = cls.instances
    events = []
    summary = render(make_plan(tmp_path / "out", jobs), events=events.append)
    assert cls.instances == before + 1, "one backend instance for all jobs"
    assert [r.status for r in summary.results] == ["failed", "failed", "failed", "done"]
    assert summary.exit_code == 1
    errors = [r.error for r in summary.failed]
    assert errors[0].startswith("job astronaut/broken (jobs[astronaut/broken], audio.broken): ")
    assert "broken.wav" in errors[0]
    assert errors[1].startswith("job astronaut/noface (jobs[astronaut/noface], portraits.astronaut): ")
    assert f"no face found in portrait {PORTRAIT}" in errors[1]
    assert "chunk 1 (frames 10-19)" in errors[2] and "fail at frame 15" in errors[2]
    # The crash kept chunk 0 for the next run.
    assert read_progress(jobs[2]).chunks_done == 1 and not jobs[2].output.exists()
    assert [e["event"] for e in events if e["event"] not in ("chunk_done",)] == [
        "run_started", "job_started", "job_failed", "job_started", "job_failed", "job_started",
        "job_failed", "job_started", "job_done", "run_done",
    ]  # fmt: skip
    assert all(json.loads(json.dumps(dict(e))) == e for e in events)


def test_a_bug_propagates_after_what_is_done_is_kept(tmp_path, voice):
    jobs = [make_job(tmp_path / "out", audio=voice, name="a/ok", output="ok.mp4"),
            make_job(tmp_path / "out", audio=voice, name="b/bug", options={"bug_at_frame": 12}, output="bug.mp4"),
            make_job(tmp_path / "out", audio=voice, name="c/never", seed=9, output="never.mp4")]  # fmt: skip
    with pytest.raises(ZeroDivisionError, match="bug at frame 12"):
        render(make_plan(tmp_path / "out", jobs))
    assert read_progress(jobs[0]).state == "done"
    assert read_progress(jobs[1]).chunks_done == 1
    assert read_progress(jobs[2]).state == "pending"


def test_unknown_backend_fails_its_jobs_only(tmp_path, voice):
    jobs = [make_job(tmp_path / "out", audio=voice, backend="nosuch"), make_job(tmp_path / "out", audio=voice)]
    summary = render(make_plan(tmp_path / "out", jobs))
    assert [r.status for r in summary.results] == ["failed", "done"]
    assert "unknown backend 'nosuch'" in summary.failed[0].error


def test_only_selects_jobs_and_rejects_unknown_names(tmp_path, voice):
    from emo_cli.errors import UsageError

    jobs = [make_job(tmp_path / "out", audio=voice, name="a/x", seed=1, output="a.mp4"),
            make_job(tmp_path / "out", audio=voice, name="b/x", seed=2, output="b.mp4")]  # fmt: skip
    summary = render(make_plan(tmp_path / "out", jobs), only=["b/x"])
    assert [r.job for r in summary.results] == ["b/x"]
    with pytest.raises(UsageError, match="--only zz"):
        render(make_plan(tmp_path / "out", jobs), only=["zz"])


def test_provenance_is_read_back_from_the_file_alone(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice, seed=7)
    render_job(job, backend())
    sidecar = json.loads(sidecar_path(job.output).read_text())
    assert sidecar["output_sha256"] == sha256_file(job.output) and sidecar["emo_seed"] == 7
    sidecar_path(job.output).unlink()
    tags = read_tags(job.output)
    assert tags["ai_generated"] == "true"
    assert tags["emo_tool"] == "emo-cli"
    assert tags["emo_backend"] == "testbars" and tags["emo_backend_version"] == "1.0"
    assert tags["emo_weights"] == "none"
    assert tags["emo_job_id"] == job.id and tags["emo_job"] == job.name
    assert tags["emo_portrait_sha256"] == sha256_file(PORTRAIT)
    assert tags["emo_audio_sha256"] == sha256_file(voice)
    assert tags["emo_seed"] == "7"
    assert json.loads(tags["emo_settings"]) == job.settings.to_dict()
    assert tags["emo_created"].endswith("Z")


def test_failing_job_raises_jobfailed_directly(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice, options={"fail_at_frame": 0})
    with pytest.raises(JobFailed, match=r"chunk 0 \(frames 0-9\)") as caught:
        render_job(job, backend())
    assert caught.value.exit_code == 1


def _job_input(job):
    from emo_cli.backends.base import JobInput
    from emo_cli.media.audio import decode_audio

    return JobInput(job.id, job.portrait.path, decode_audio(job.audio.path, 16000), 16000, job.settings.fps,
                    job.num_frames, job.settings.seed, job.settings.resolution,
                    get_backend_class("testbars").resolve_options(job.settings.options))  # fmt: skip
