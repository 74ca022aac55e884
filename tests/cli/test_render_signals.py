"""`emo render` stopped by a signal exits with 128 + its number (130 Ctrl-C, 143 SIGTERM) and no
traceback, wherever the signal arrives: while planning, while rendering chunks in the pool."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from factories import ASSETS, EMO, emo_env

DEADLINE_S = 90


def manifest(folder: Path) -> Path:
    shutil.copyfile(ASSETS / "astronaut.jpg", folder / "a.jpg")
    shutil.copyfile(ASSETS / "hello_en.wav", folder / "en.wav")
    path = folder / "m.yaml"
    path.write_text(textwrap.dedent("""
        version: 1
        output_dir: out
        defaults: {backend: testbars, fps: 25, resolution: 64, chunk_frames: 10}
        portraits: {a: a.jpg}
        audio: {en: en.wav}
        jobs: [{portrait: a, audio: en}]
    """))
    return path


def stop_at(path: Path, point: str, sig: int, fifo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `emo render` until it reaches `point`, send `sig` to its whole process group (as Slurm
    and systemd do), and let it finish."""
    os.mkfifo(fifo)
    proc = subprocess.Popen([*EMO, "render", str(path), *args], env=emo_env(EMO_TEST_PAUSE_AT=point,
                            EMO_TEST_PAUSE_FIFO=str(fifo)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        announced = b""
        deadline = time.monotonic() + DEADLINE_S
        while not announced.endswith(b"\n"):
            assert proc.poll() is None, f"render ended before {point}: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"render did not reach {point}"
            ready, _, _ = select.select([reader], [], [], 0.5)
            if ready:
                announced += os.read(reader, 100)
        os.close(reader)
        os.killpg(proc.pid, sig)
        began = time.monotonic()
        out, err = proc.communicate(timeout=DEADLINE_S)
        assert time.monotonic() - began < 15, "slow to stop"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("point", ["plan", "render:1"])
def test_a_signal_to_the_process_group_exits_128_plus_its_number_without_a_traceback(tmp_path, sig, code, point):
    path = manifest(tmp_path)
    done = stop_at(path, point, sig, tmp_path / "fifo", "--devices", "cpu:1")
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    assert "interrupted: finished chunks are kept" in done.stderr
