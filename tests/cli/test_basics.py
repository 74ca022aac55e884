"""The everyday commands: --version, shell completion, emo clean."""

from __future__ import annotations

import json
import re
import shutil

from factories import PORTRAIT, run_emo, write_wav
from typer.testing import CliRunner

from emo_cli import __version__
from emo_cli.cli import app
from emo_cli.execution.lease import JobLease
from emo_cli.fsutil import sha256_file

MANIFEST = """\
version: 1
output_dir: out
defaults: {backend: testbars, fps: 25, resolution: 64, seed: %d, chunk_frames: 10}
portraits: {astro: astronaut.jpg}
audio: {voice: voice.wav}
jobs:
  - {portrait: astro, audio: voice}
"""


def test_version_flag_and_shell_completion():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"emo-cli {__version__}\n"
    helped = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout
    shown = CliRunner().invoke(app, ["--show-completion", "bash"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "_EMO_COMPLETE=complete_bash" in shown.stdout


def test_clean_keep_current_removes_only_unused_work_dirs_and_says_how_much(tmp_path):
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.6)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST % 0)
    assert run_emo("render", "--json", str(manifest), timeout=60).returncode == 0
    manifest.write_text(MANIFEST % 1)  # a new revision: a new job id, the old work dir is unused
    assert run_emo("render", "--json", "--overwrite", str(manifest), timeout=60).returncode == 0
    jobs = tmp_path / "out" / ".emo" / "jobs"
    (current,) = (r["id"] for r in json.loads(run_emo("plan", "--json", str(manifest), timeout=60).stdout))
    (old,) = (p for p in jobs.iterdir() if p.name != current)
    old_bytes = sum(p.stat().st_size for p in old.rglob("*") if p.is_file())
    busy = jobs / ("f" * 64)
    lease = JobLease.acquire(busy, heartbeat_s=0)  # a live render (this process) holds it
    assert lease is not None
    output = tmp_path / "out" / "astro" / "voice.mp4"
    digest = sha256_file(output)

    dry = run_emo("clean", "--keep-current", "--dry-run", "--json", str(manifest), timeout=60)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert [e["path"] for e in planned["removed"]] == [str(old)] and old.is_dir()
    assert planned["freed_bytes"] == old_bytes and planned["kept"] == 1 and planned["emptied"] == []

    done = run_emo("clean", "--keep-current", str(manifest), timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"removed {old}" in done.stdout and "1 unused work dir(s) removed, freed" in done.stdout
    assert f"kept    {busy}: in use by" in done.stdout and "1 in use" in done.stdout
    assert not old.exists() and (jobs / current / "journal.json").is_file() and busy.is_dir()
    assert (jobs / current / "chunks" / "00000.mp4").is_file()
    assert sha256_file(output) == digest
    status = json.loads(run_emo("status", "--json", str(manifest), timeout=60).stdout)
    assert status[0]["state"] == "done"
    lease.release()


def test_clean_by_default_also_removes_the_chunks_of_finished_jobs_and_a_rerun_still_skips_them(tmp_path):
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.6)
    write_wav(tmp_path / "other.wav", 0.5, seed=1)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST % 0)
    assert run_emo("render", "--json", str(manifest), timeout=60).returncode == 0
    two = (MANIFEST % 0).replace("{voice: voice.wav}", "{voice: voice.wav, other: other.wav}")
    manifest.write_text(two + "  - {portrait: astro, audio: other}\n")  # astro/other: never rendered
    plan = {r["name"]: r["id"] for r in json.loads(run_emo("plan", "--json", str(manifest), timeout=60).stdout)}
    work = tmp_path / "out" / ".emo" / "jobs" / plan["astro/voice"]
    output = tmp_path / "out" / "astro" / "voice.mp4"
    digest = sha256_file(output)
    files = [p for p in work.rglob("*") if p.is_file() and not p.name.startswith("lease.")]
    chunk_bytes = sum(p.stat().st_size for p in files if p.name not in ("journal.json", "events.jsonl"))

    dry = json.loads(run_emo("clean", "--dry-run", "--json", str(manifest), timeout=60).stdout)
    assert dry["emptied"] == [{"path": str(work), "bytes": chunk_bytes}] and (work / "chunks").is_dir()
    done = run_emo("clean", str(manifest), timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"removed the chunks of {work}" in done.stdout and "the chunks of 1 finished job(s) removed" in done.stdout
    left = {p.name for p in work.rglob("*") if not p.name.startswith("lease.")}
    assert left == {"journal.json", "events.jsonl"}  # the journal still records the output
    assert sha256_file(output) == digest
    status = {r["name"]: r["state"] for r in json.loads(run_emo("status", "--json", str(manifest), timeout=60).stdout)}
    assert status == {"astro/voice": "done", "astro/other": "pending"}
    rerun = run_emo("render", "--json", "--only", "astro/voice", str(manifest), timeout=60)
    assert rerun.returncode == 0 and '"job_skipped"' in rerun.stdout and sha256_file(output) == digest
    output.unlink()  # lost: rendered again from scratch
    again = run_emo("render", "--json", "--only", "astro/voice", str(manifest), timeout=60)
    assert again.returncode == 0, again.stderr
    assert '"chunks_reused": 0' in again.stdout and '"job_done"' in again.stdout and output.is_file()


def test_every_environment_variable_the_code_reads_is_in_the_readme():
    from factories import REPO

    source = "\n".join(p.read_text() for p in (REPO / "emo_cli").rglob("*.py"))
    read = set(re.findall(r"[\"'](EMO_[A-Z0-9_]+)[\"']", source))  # constants and envvar= names
    read |= set(re.findall(r"(?:environ(?:\.get)?[\[(]|getenv\()\s*[\"']([A-Z][A-Z0-9_]+)[\"']", source))
    assert {"EMO_DEVICES", "FFMPEG_BINARY", "EMO_USE_SYSTEM_FFMPEG", "EMO_DEBUG"} <= read
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    assert sorted(name for name in read if f"`{name}`" not in section) == []


def test_render_options_read_their_environment_variables(tmp_path):
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.3)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST % 0)
    proc = run_emo("render", "--json", str(manifest), timeout=60, EMO_EXECUTOR="inline", EMO_DEVICES="cpu")
    assert proc.returncode == 0, proc.stderr
    started = json.loads(proc.stdout.splitlines()[0])
    assert started["event"] == "run_started" and started["executor"] == "inline"
    bad = run_emo("render", str(manifest), timeout=60, EMO_EXECUTOR="nosuch")
    assert bad.returncode == 2 and "nosuch" in bad.stderr
