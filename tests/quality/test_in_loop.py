"""The quality gates inside `emo render` (`settings.qc`): per chunk as chunks are rendered, the
whole video once published; `on_fail` warn | fail | retry; records in the journal, the sidecar
and the events; the `qc:` section checked like every other part of a manifest."""

from __future__ import annotations

import json

import pytest
from factories import ASSETS, PORTRAIT, make_job
from qc_faults import CAST_CHUNK, CHUNK_FRAMES, RESOLUTION, ColourCastWarp

from emo_cli.api import load_manifest
from emo_cli.backends.warp import WarpBackend
from emo_cli.errors import ManifestError
from emo_cli.execution.jobs import render_job
from emo_cli.execution.results import JobFailed
from emo_cli.execution.workdir import Journal
from emo_cli.manifest.schema import base_schema
from emo_cli.provenance.tags import sidecar_path
from emo_cli.quality.thresholds import Thresholds

SPEECH = ASSETS / "hello_en.wav"  # 6.4 s: four chunks of 50 frames (the last one 11)


def warp_job(folder, on_fail="warn", video=True, **options):
    qc = {"enabled": True, "on_fail": on_fail, "retries": 2, "sample_frames": 3, "video": video}
    return make_job(folder, PORTRAIT, SPEECH, backend="warp", resolution=RESOLUTION, chunk_frames=CHUNK_FRAMES,
                    options=options, qc=qc)  # fmt: skip


def test_a_normal_warp_render_passes_with_its_records_in_journal_sidecar_and_events(tmp_path):
    job, events = warp_job(tmp_path), []
    result = render_job(job, WarpBackend(), events=events.append)
    assert (result.status, result.qc) == ("done", "pass")

    journal = Journal.load(job.work_dir)
    assert journal is not None and len(journal.chunks) == 4
    for index, record in journal.chunks.items():
        assert record.qc["passed"] and record.qc["seed"] == 0 and record.qc["retried"] == []
        figures = record.qc["figures"]
        assert figures["index"] == index and figures["measured"] == 3 and len(figures["frames"]) == 3
        assert figures["ssim"] >= Thresholds().min_ssim
    assert journal.quality["passed"] and journal.quality["chunks_measured"] == 4
    video = journal.quality["video"]
    assert video["passed"] and {g["name"] for g in video["gates"]} >= {"lip-sync", "exact duration", "provenance"}
    assert all(g["passed"] is not False for g in video["gates"])

    sidecar = json.loads(sidecar_path(job.output).read_text())
    assert sidecar["quality"] == journal.quality
    done = [e for e in events if e["event"] == "chunk_done"]
    assert [e["qc"] for e in done] == [journal.chunks[i].qc for i in range(4)]
    assert events[-1]["event"] == "job_done" and events[-1]["qc"] == journal.quality


def test_a_failing_chunk_with_on_fail_fail_fails_the_job_naming_the_measure_and_the_chunk(tmp_path):
    job, events = warp_job(tmp_path, on_fail="fail"), []
    with pytest.raises(JobFailed) as info:
        render_job(job, ColourCastWarp(), events=events.append)
    message = str(info.value)
    assert f"chunk {CAST_CHUNK} (frames 100-149)" in message and "delta_e_face" in message
    assert info.value.exit_code == 1
    assert not job.output.exists()
    # The chunks before it are kept, judged and journaled; nothing of the failing one is.
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [0, 1]
    assert sorted(Journal.load(job.work_dir).chunks) == [0, 1]


def test_with_warn_the_failing_chunk_is_reported_and_the_job_is_done(tmp_path):
    job = warp_job(tmp_path, video=False)
    result = render_job(job, ColourCastWarp())
    assert result.status == "done"
    assert result.qc.startswith(f"fail: chunk {CAST_CHUNK}: delta_e_face")
    journal = Journal.load(job.work_dir)
    assert [journal.chunks[i].qc["passed"] for i in range(4)] == [True, True, False, True]
    sidecar = json.loads(sidecar_path(job.output).read_text())
    assert sidecar["quality"]["passed"] is False and sidecar["quality"]["video"] is None


def test_retry_on_a_deterministic_backend_fails_saying_why(tmp_path):
    with pytest.raises(JobFailed, match="backend 'warp' renders the same frames with any seed") as info:
        render_job(warp_job(tmp_path, on_fail="retry", video=False), ColourCastWarp())
    assert f"chunk {CAST_CHUNK}" in str(info.value)


def test_a_whole_video_gate_fails_the_job_after_publish_and_again_on_the_next_run(tmp_path):
    job = warp_job(tmp_path, on_fail="fail", expression=0)  # a frozen mouth: lip-sync fails
    with pytest.raises(JobFailed, match=r"settings\.qc\): quality gates failed: video: lip-sync") as info:
        render_job(job, WarpBackend())
    assert info.value.exit_code == 1
    assert job.output.exists()  # published, then judged: the report shows what failed
    with pytest.raises(JobFailed, match="video: lip-sync"):
        render_job(job, WarpBackend())  # finished, not rendered again, still failed


def test_the_qc_section_is_checked_at_file_line(write_manifest):
    path = write_manifest(
        """
        version: 1
        defaults:
          qc: {on_fail: sometimes, min_ssmi: 0.5}
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav}
        jobs:
          - {portrait: astronaut, audio: en, settings: {qc: {sample_frames: 0}}}
        """
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    got = {(p.line, p.path): p.message for p in info.value.problems}
    assert got == {
        (3, "defaults.qc.on_fail"): "must be one of 'warn', 'fail', 'retry'; got 'sometimes'",
        (3, "defaults.qc.min_ssmi"): "unknown key 'min_ssmi' (did you mean 'min_ssim'?)",
        (7, "jobs[0].settings.qc.sample_frames"): "must be at least 1, got 0",
    }


def test_the_schema_offers_every_threshold():
    qc = base_schema()["$defs"]["settings"]["properties"]["qc"]["properties"]
    assert set(qc) == {*Thresholds.names(), "enabled", "on_fail", "retries", "sample_frames", "video"}
