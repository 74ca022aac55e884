"""`emo qc`: its table, its JSON, its exit codes, and that it never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

from factories import emo_env
from typer.testing import CliRunner

from emo_cli.cli import app

runner = CliRunner()


def test_a_normal_render_exits_0_with_a_table_and_a_verdict(qc_videos, speech_with_pause):
    result = runner.invoke(app, ["qc", str(qc_videos["normal"]), "--audio", str(speech_with_pause)],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    for gate in ("lip-sync", "mouth at rest in silence", "colour drift, face", "exact duration", "provenance"):
        assert gate in result.output
    assert "PASS: normal.mp4 passes every quality gate." in result.output


def test_a_failing_video_exits_1_naming_the_gate_and_the_chunk(qc_videos):
    result = runner.invoke(app, ["qc", str(qc_videos["cast"]), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert doc["passed"] is False
    failed = {g["name"]: g for g in doc["gates"] if g["passed"] is False}
    assert set(failed) == {"colour drift, face", "colour drift, background"}
    assert failed["colour drift, face"]["chunk"] == 2
    assert "colour drift, face at chunk 2" in doc["verdict"]
    assert [c["index"] for c in doc["chunks"]] == [0, 1, 2, 3]


def test_a_threshold_on_the_command_line_changes_the_verdict(qc_videos):
    result = runner.invoke(app, ["qc", str(qc_videos["cast"]), "--max-delta-e", "30", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["qc", str(qc_videos["stripped"]), "--no-provenance", "--json"])
    assert result.exit_code == 0, result.output
    assert "provenance" not in {g["name"] for g in json.loads(result.output)["gates"]}


def test_unreadable_input_exits_2(tmp_path, speech_with_pause, qc_videos):
    missing = runner.invoke(app, ["qc", str(tmp_path / "nothing.mp4")])
    assert missing.exit_code == 2
    assert "cannot open" in missing.output and "nothing.mp4" in missing.output
    not_video = runner.invoke(app, ["qc", str(speech_with_pause)])
    assert not_video.exit_code == 2
    assert "has no video stream" in not_video.output
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    assert runner.invoke(app, ["qc", str(garbage)]).exit_code == 2
    bad_audio = runner.invoke(app, ["qc", str(qc_videos["normal"]), "--audio", str(garbage)])
    assert bad_audio.exit_code == 2
    assert "garbage.mp4" in bad_audio.output


def test_emo_qc_does_not_import_torch(qc_videos):
    """The CPU path stays torch-free: the whole `emo qc` run, in a fresh process."""
    code = (
        "import sys\n"
        "from emo_cli.cli import main\n"
        f"sys.argv = ['emo', 'qc', {str(qc_videos['normal'])!r}, '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'silero_vad', 'torchaudio'))\n"
        "assert not heavy, heavy\n"
        "assert 'onnxruntime' in sys.modules\n"
        "print('torch-free')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=emo_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("torch-free")


def test_a_video_without_audio_fails_lip_sync_and_duration(qc_videos, tmp_path):
    from emo_cli.media.ffmpeg import run_ffmpeg

    silent = tmp_path / "silent.mp4"
    run_ffmpeg(["-i", str(qc_videos["normal"]), "-map", "0:v", "-c", "copy", "-an", str(silent)],
               what="drop the audio of", file=qc_videos["normal"])  # fmt: skip
    result = runner.invoke(app, ["qc", str(silent), "--no-provenance", "--json"])
    assert result.exit_code == 1, result.output
    gates = {g["name"]: g for g in json.loads(result.output)["gates"]}
    assert gates["lip-sync"]["passed"] is False and "no audio track" in gates["lip-sync"]["detail"]
    assert gates["exact duration"]["passed"] is False
    assert gates["mouth at rest in silence"]["passed"] is None  # not judged
    assert gates["colour drift, face"]["passed"] is True
