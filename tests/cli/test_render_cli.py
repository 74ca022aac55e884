"""`emo render` end to end in a real process: JSON events, exit codes, resume, Ctrl-C."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from factories import PORTRAIT, emo_env, run_emo, run_to_pause, write_wav

pytestmark = pytest.mark.skipif(
    not hasattr(importlib.import_module("emo_cli.manifest"), "load_manifest"),
    reason="needs the manifest loader (emo_cli.manifest.load_manifest)",
)
DEADLINE_S = 60

MANIFEST = """\
version: 1
output_dir: out
output: "{portrait}/{audio}.mp4"
defaults: {backend: testbars, fps: 25, resolution: 64, seed: 0, chunk_frames: 10}
portraits: {astro: astronaut.jpg}
audio: {voice: voice.wav, other: other.wav}
jobs:
  - {portrait: astro, audio: voice}
  - {portrait: astro, audio: other, settings: {testbars: {fail_at_frame: %s}}}
"""


def env(**extra: str) -> dict[str, str]:
    return emo_env(**extra)


def emo(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return run_emo(*args, timeout=DEADLINE_S, **extra_env)


def project(tmp_path: Path, fail_at: int | None = None) -> Path:
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.9)
    write_wav(tmp_path / "other.wav", 0.7, seed=3)
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(MANIFEST % ("null" if fail_at is None else fail_at))
    return manifest


def events_of(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_json_events_exit_codes_and_resume(tmp_path):
    manifest = project(tmp_path, fail_at=12)
    first = emo("render", "--json", str(manifest))
    assert first.returncode == 1, first.stderr
    events = events_of(first)
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_done"
    failed = [e for e in events if e["event"] == "job_failed"]
    assert len(failed) == 1 and "astro/other" in failed[0]["error"] and "fail at frame 12" in failed[0]["error"]
    done = next(e for e in events if e["event"] == "job_done")
    assert Path(done["output"]) == tmp_path / "out" / "astro" / "voice.mp4"

    inspect = emo("inspect", "--json", done["output"])
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["tags"]["emo_backend"] == "testbars"

    manifest.write_text(MANIFEST % "null")  # fixed: the failed job changes id, the done one is kept
    second = emo("render", "--json", str(manifest))
    assert second.returncode == 0, second.stderr
    kinds = [(e["event"], e.get("job")) for e in events_of(second) if e["event"].startswith("job_")]
    assert ("job_skipped", "astro/voice") in kinds and ("job_done", "astro/other") in kinds

    fresh = emo("render", "--json", "--no-resume", "--only", "astro/voice", str(manifest))
    assert fresh.returncode == 0
    assert sum(e["event"] == "chunk_done" for e in events_of(fresh)) == 3  # 23 frames in chunks of 10


def test_plain_output_has_a_summary_table(tmp_path):
    manifest = project(tmp_path)
    proc = emo("render", str(manifest))
    assert proc.returncode == 0, proc.stderr
    assert "render summary" in proc.stdout and "astro/voice" in proc.stdout and "done" in proc.stdout


def test_invalid_manifest_and_unknown_job_exit_2(tmp_path):
    manifest = project(tmp_path)
    manifest.write_text(manifest.read_text().replace("audio: voice}", "audio: nosuch}"))
    proc = emo("render", str(manifest))
    assert proc.returncode == 2 and "nosuch" in proc.stderr
    manifest = project(tmp_path)
    proc = emo("render", "--only", "zz/zz", str(manifest))
    assert proc.returncode == 2 and "--only zz/zz" in proc.stderr


def test_ctrl_c_keeps_finished_chunks_and_exits_130(tmp_path):
    manifest = project(tmp_path)
    # One worker: the longer job (astro/voice) goes first and is the one interrupted.
    proc = run_to_pause([sys.executable, "-m", "emo_cli", "render", "--json", "--devices", "cpu:1", str(manifest)],
                        "render:1", tmp_path / "pause.fifo", env(), DEADLINE_S, stdout=subprocess.PIPE,
                        text=True)  # fmt: skip
    try:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert "again to resume" in stderr
    last = json.loads(stdout.splitlines()[-1])
    assert last["event"] == "interrupted" and last["schema"] == 1 and last["time"].endswith("Z")
    again = emo("render", "--json", str(manifest))
    assert again.returncode == 0
    started = next(e for e in events_of(again) if e["event"] == "job_started" and e["job"] == "astro/voice")
    assert started["chunks_reused"] == 1


def test_a_changed_setting_is_refused_over_the_old_output_until_overwrite(tmp_path):
    manifest = project(tmp_path)
    assert emo("render", "--json", "--only", "astro/voice", str(manifest)).returncode == 0
    original = manifest.read_text()
    manifest.write_text(original.replace("seed: 0", "seed: 7"))
    refused = emo("render", "--only", "astro/voice", str(manifest))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "would replace another job's video" in refused.stderr and "--overwrite" in refused.stderr
    assert "made by job astro/voice" in refused.stderr
    assert emo("render", "--json", "--overwrite", "--only", "astro/voice", str(manifest)).returncode == 0
    manifest.write_text(original)  # the old revision: its file now holds the new one's video
    rows = {row["name"]: row for row in json.loads(emo("status", "--json", str(manifest)).stdout)}
    assert rows["astro/voice"]["state"] == "replaced" and rows["astro/voice"]["output_owner"] == "astro/voice"
    table = emo("status", str(manifest)).stdout
    assert "replaced" in table and "holds astro/voice's video" in table


def test_policy_overwrite_in_the_manifest_does_what_the_flag_does(tmp_path):
    manifest = project(tmp_path)
    assert emo("render", "--json", "--only", "astro/voice", str(manifest)).returncode == 0
    revised = manifest.read_text().replace("seed: 0", "seed: 7")
    manifest.write_text(revised + "policy: {overwrite: true}\n")
    refused = emo("render", "--no-overwrite", "--only", "astro/voice", str(manifest))  # the command line wins
    assert refused.returncode == 1 and "would replace another job's video" in refused.stderr
    assert "policy: {overwrite: true}" in refused.stderr
    replaced = emo("render", "--json", "--only", "astro/voice", str(manifest))
    assert replaced.returncode == 0 and any(e["event"] == "job_done" for e in events_of(replaced))
    manifest.write_text(revised + "policy: {overwrite: 'yes'}\n")
    invalid = emo("validate", str(manifest))
    assert invalid.returncode != 0 and "Traceback" not in invalid.stderr
    assert "demo.yaml:10:21 policy.overwrite: expected true or false" in invalid.stderr
