"""Storage faults (a full disk, a read-only output dir) become messages that name the file and
say what to do, leave nothing stale behind, and a render resumed once space is free is the same.

Where this process may mount (root in a container), the faults are real: a small tmpfs, a
read-only bind mount. Elsewhere the same errors are injected at the write.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from factories import PLUGINS, decoded_frames, make_job, make_plan, write_wav

from emo_cli.execution import render
from emo_cli.execution.executors import LocalPoolExecutor
from emo_cli.execution.journal import Journal
from emo_cli.fsutil import atomic_path

pytestmark = pytest.mark.usefixtures("test_backends")


def _mount(*args: str) -> bool:
    try:
        return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards; skipped where this process cannot mount."""
    point = tmp_path / "disk"
    point.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)):
        pytest.skip("cannot mount a tmpfs here (the injected-error tests cover the same paths)")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def stale_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` bytes free."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


@pytest.fixture
def voice(tmp_path) -> Path:
    return write_wav(tmp_path / "assets" / "voice.wav", 1.5)  # 38 frames, chunks 10,10,10,8


def reference(tmp_path: Path, voice: Path):
    job = make_job(tmp_path / "reference", audio=voice)
    assert render(make_plan(job.output_dir, [job])).exit_code == 0
    return job


def chunk_hashes(job) -> list[str]:
    journal = Journal.load(job.work_dir)
    return [journal.chunks[i].segment_sha256 for i in sorted(journal.chunks)]


def test_a_full_disk_while_writing_chunks_is_a_clear_failure_and_resume_is_identical(tmp_path, voice, small_disk):
    ref = reference(tmp_path, voice)
    pages = [-(-p.stat().st_size // 4096) * 4096 for p in ref.work_dir.rglob("*") if p.is_file()]
    work_bytes = sum(pages)  # a tmpfs takes whole pages
    job = make_job(small_disk / "out", audio=voice)
    job.work_dir.mkdir(parents=True)
    filler = fill(small_disk, work_bytes * 2 // 3)  # room for a chunk or two and their journal, not all four
    summary = render(make_plan(job.output_dir, [job]))
    (result,) = summary.results
    assert result.status == "failed" and summary.exit_code != 0
    # Python's chunk-state write or ffmpeg's segment write meets the full disk first, by size.
    assert re.search(r"the disk is full[;:] free space on it and run the same command again", result.error), result.error
    assert str(small_disk) in result.error  # names a file on the full disk
    assert "Traceback" not in result.error
    assert stale_files(small_disk) == [] and not job.output.exists()
    filler.unlink()
    again = render(make_plan(job.output_dir, [job]))
    assert again.exit_code == 0 and 0 < again.results[0].chunks_rendered < 4
    assert chunk_hashes(job) == chunk_hashes(ref)
    assert all((a == b).all() for a, b in zip(decoded_frames(job.output), decoded_frames(ref.output), strict=True))


def test_a_full_disk_at_the_start_leaves_no_lease_temporary(tmp_path, voice, small_disk):
    job = make_job(small_disk / "out", audio=voice)
    job.work_dir.mkdir(parents=True)
    fill(small_disk, 0)
    (result,) = render(make_plan(job.output_dir, [job])).results
    assert result.status == "failed" and "lease" in result.error and "free space" in result.error
    assert stale_files(small_disk) == [] and [p.name for p in job.work_dir.iterdir()] == []


def test_a_full_disk_injected_at_a_chunk_write_names_the_file(tmp_path, voice, monkeypatch):
    import emo_cli.execution.workdir as workdir

    job = make_job(tmp_path / "out", audio=voice)
    real = workdir.atomic_write_bytes
    calls = []

    def full_on_second(final, data):
        calls.append(final)
        if len(calls) == 2:
            with atomic_path(final) as tmp:
                tmp.write_bytes(data[:10])
                raise OSError(errno.ENOSPC, "No space left on device")  # as write(2) says it: no file
        real(final, data)

    monkeypatch.setattr(workdir, "atomic_write_bytes", full_on_second)
    (result,) = render(make_plan(job.output_dir, [job])).results
    assert result.status == "failed"
    assert f"{calls[1]}: No space left on device; the disk is full" in result.error, result.error
    assert stale_files(job.output_dir) == []
    monkeypatch.setattr(workdir, "atomic_write_bytes", real)
    again = render(make_plan(job.output_dir, [job]))
    assert again.exit_code == 0 and again.results[0].chunks_rendered == 3


@pytest.fixture
def read_only(tmp_path):
    """make_read_only(folder): a read-only bind mount of `folder` over itself; skipped where
    this process cannot mount."""
    mounted: list[Path] = []

    def make(folder: Path) -> None:
        if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,ro,bind", str(folder))):
            pytest.skip("cannot make a read-only bind mount here")
        mounted.append(folder)

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_read_only_output_dir_with_every_job_done_only_says_skipped(tmp_path, voice, read_only, executor,
                                                                      monkeypatch):  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    job = make_job(tmp_path / "out", audio=voice)
    other = make_job(tmp_path / "out", audio=voice, output="second/voice.mp4", seed=1)
    plan = make_plan(job.output_dir, [job, other])
    assert render(plan).exit_code == 0
    read_only(job.output_dir)
    events: list[dict] = []
    where = LocalPoolExecutor("cpu:1", 0) if executor == "local" else executor
    summary = render(plan, events=events.append, executor=where)
    assert [r.status for r in summary.results] == ["skipped", "skipped"] and summary.exit_code == 0
    assert not [e for e in events if e["event"] == "job_failed"]


def test_a_read_only_output_dir_with_work_left_fails_clearly(tmp_path, voice, read_only):
    job = make_job(tmp_path / "out", audio=voice)
    job.output_dir.mkdir()
    read_only(job.output_dir)
    summary = render(make_plan(job.output_dir, [job]))
    (result,) = summary.results
    assert result.status == "failed" and summary.exit_code != 0
    assert "Read-only file system" in result.error and "render to a writable output_dir" in result.error
    assert str(job.output_dir) in result.error


def test_the_cli_reports_a_journal_that_is_a_folder_and_renders(tmp_path, voice):
    job = make_job(tmp_path / "out", audio=voice)
    (Journal.path_for(job.work_dir) / "x").mkdir(parents=True)
    events: list[dict] = []
    assert render(make_plan(job.output_dir, [job]), events=events.append).exit_code == 0
    assert [json.dumps(dict(e)) for e in events if e["event"] == "state_repaired"]


def test_signing_out_of_space_says_so_instead_of_blaming_the_certificate(tmp_path, voice, monkeypatch):
    import c2pa

    def full(self, *args, **kwargs):
        raise c2pa.C2paError("Io: No space left on device (os error 28)")  # how the SDK reports a failed write

    monkeypatch.setattr(c2pa.Builder, "sign", full)
    job = make_job(tmp_path / "out", audio=voice)
    (result,) = render(make_plan(job.output_dir, [job])).results
    assert result.status == "failed"
    assert f"cannot write the signed {job.output}: the disk that holds it is full" in result.error, result.error
    assert "certificate" not in result.error
    assert stale_files(job.output_dir) == [] and not job.output.exists()
