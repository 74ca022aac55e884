"""Every gate on real renders: a normal warp render passes them all, and each fault is caught
by the measure meant to catch it while every other gate stays green."""

from __future__ import annotations

import pytest
from qc_faults import BLUR_CHUNK, CAST_CHUNK, DROPPED_FRAMES, SHIFT_S

from emo_cli.quality import measure_video
from emo_cli.quality.thresholds import Thresholds

# The session's renders (four warp jobs, two edited copies) and six measure_video runs: ~20-30 s.
pytestmark = pytest.mark.slow

GATES = ("face found", "lip-sync", "mouth at rest in silence", "identity drift (SSIM)", "colour drift, face",
         "colour drift, background", "sharpness", "landmark jitter", "blink rate", "exact duration",
         "provenance")  # fmt: skip


@pytest.fixture(scope="module")
def reports(qc_videos, speech_with_pause):
    from qc_faults import PORTRAIT

    return {name: measure_video(path, audio=speech_with_pause, portrait=PORTRAIT) for name, path in qc_videos.items()}


def failing(report) -> set[str]:
    return {g.name for g in report.gates if g.passed is False}


def gate(report, name):
    return next(g for g in report.gates if g.name == name)


def test_a_normal_render_passes_every_gate(reports):
    report = reports["normal"]
    assert tuple(g.name for g in report.gates) == GATES
    assert all(g.passed is True for g in report.gates), [g.to_dict() for g in report.gates]
    assert report.exit_code == 0
    assert report.figures["lip_sync"]["correlation"] >= 0.5
    assert abs(report.figures["lip_sync"]["lag_frames"]) <= 1
    assert report.figures["mouth_at_rest"]["silent_frames"] >= 20  # the 1.2 s pause was judged
    assert report.figures["provenance"]["c2pa"] == "valid"


def test_a_frozen_mouth_fails_lip_sync_alone(reports):
    report = reports["frozen"]
    assert failing(report) == {"lip-sync"}
    assert "the mouth hardly moves" in gate(report, "lip-sync").detail
    assert report.exit_code == 1


def test_audio_200_ms_late_fails_lip_sync_on_its_lag(reports):
    report = reports["shifted"]
    assert failing(report) == {"lip-sync"}
    lag = report.figures["lip_sync"]["lag_frames"]
    assert lag == pytest.approx(-SHIFT_S * report.fps, abs=1)  # the mouth moves before the sound
    assert "frames before the sound" in gate(report, "lip-sync").detail
    assert report.figures["lip_sync"]["correlation"] >= 0.5  # in sync but for the lag


def test_a_colour_cast_in_one_chunk_is_located_at_that_chunk(reports):
    report = reports["cast"]
    assert failing(report) == {"colour drift, face", "colour drift, background"}
    for name in ("colour drift, face", "colour drift, background"):
        assert gate(report, name).chunk == CAST_CHUNK
        assert f"chunk {CAST_CHUNK} (frames {CAST_CHUNK * 50}-{CAST_CHUNK * 50 + 49})" in gate(report, name).detail
    shifts = [c.delta_e_face for c in report.chunks]
    assert shifts[CAST_CHUNK] > 8 and max(s for i, s in enumerate(shifts) if i != CAST_CHUNK) < 4, shifts


def test_an_out_of_focus_chunk_fails_sharpness_at_that_chunk(reports):
    report = reports["blurred"]
    assert "sharpness" in failing(report)
    # A blurred face also lowers SSIM and throws the face mesh's reading of the lips off for the
    # whole chunk (it reads them wider), so lip-sync may fail with it; nothing else may.
    assert failing(report) <= {"sharpness", "identity drift (SSIM)", "lip-sync"}
    assert gate(report, "sharpness").chunk == BLUR_CHUNK
    sharp = [c.sharpness for c in report.chunks]
    # The other chunks stay above the gate (warp 1.2's painted lids and lips are smoother than the
    # photo's, so a sharp chunk reads about 0.5 of the portrait, a blurred one under 0.3).
    assert sharp[BLUR_CHUNK] < 0.3 < Thresholds().min_sharpness < min(s for i, s in enumerate(sharp) if i != BLUR_CHUNK), sharp


def test_a_mouth_that_talks_through_silence_fails_mouth_at_rest(reports):
    report = reports["babbling"]
    assert "mouth at rest in silence" in failing(report)
    assert report.figures["mouth_at_rest"]["closed_fraction"] < 0.75
    assert not failing(report) & {"exact duration", "provenance", "colour drift, face", "sharpness"}


def test_frames_dropped_from_the_end_fail_the_duration(reports):
    report = reports["dropped"]
    assert failing(report) == {"exact duration"}
    duration = report.figures["duration"]
    assert duration["expected_frames"] - duration["frames"] >= DROPPED_FRAMES - 1
    assert f"{duration['frames']} frames where" in gate(report, "exact duration").detail


def test_stripped_metadata_fails_provenance_and_the_watermark_is_still_found(reports):
    report = reports["stripped"]
    assert failing(report) == {"provenance"}
    figures = report.figures["provenance"]
    assert figures["tags"] is False and figures["c2pa"] == "absent" and figures["sidecar_present"] is False
    assert figures["watermark_found"] is True
    assert figures["watermark_job_id_prefix"] == reports["normal"].figures["provenance"]["watermark_job_id_prefix"]
    assert "provenance tags absent" in gate(report, "provenance").detail
    assert "still marked as AI-generated" in gate(report, "provenance").detail


def test_truncated_audio_fails_the_duration(qc_videos, tmp_path, speech_with_pause):
    """The same video judged against a longer input: its audio track is short of it."""
    from factories import write_samples

    from emo_cli.media.audio import decode_audio

    samples = decode_audio(speech_with_pause, 16000)
    longer = write_samples(tmp_path / "longer.wav", list(samples) + [0.0] * 8000, 16000)
    report = measure_video(qc_videos["normal"], audio=longer)
    assert "exact duration" in failing(report)
    assert "(truncated)" in gate(report, "exact duration").detail

