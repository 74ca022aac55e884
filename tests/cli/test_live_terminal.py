"""The live view as a user sees it: `emo render` in a real 12-row pseudo-terminal, its bytes fed
to a terminal emulator (pyte), the screen read at a moment the pause points fix.

Thirty jobs on four workers, handed out longest first, then by id. The longest job fails at its
first frame; another process (this test) holds the second's lease. Each worker freezes before
chunk 1 of one of the 11th to 14th jobs (`render:1@JOB`): once all four have said so, the eight
jobs before them have finished (a worker takes its next job only after its last) and the 16 after
them wait. So the screen must come to show 4 running, 16 waiting, 8 done, 1 failed, 1 held; the
test waits for that line (with a deadline, not a sleep), then checks the rest of the screen and
what scrolled above it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pyte
from factories import EMO, PORTRAIT, emo_env, write_wav

from emo_cli.api import plan_manifest
from emo_cli.execution.lease import JobLease
from emo_cli.execution.shards import longest_first

ROWS, COLUMNS = 12, 100
SECONDS = {"fail": 0.7, "held": 0.6, **{f"a{i:02d}": 0.5 for i in range(28)}}  # by name; 0.5 s: 13 frames
DEADLINE_S = 120


def project(folder: Path) -> Path:
    shutil.copy(PORTRAIT, folder / "astronaut.jpg")
    for seed, (name, seconds) in enumerate(SECONDS.items()):
        write_wav(folder / f"{name}.wav", seconds, seed=seed)
    manifest = folder / "m.yaml"
    manifest.write_text(
        "version: 1\noutput_dir: out\n"
        "defaults: {backend: testbars, fps: 25, resolution: 64, seed: 0, chunk_frames: 5,\n"
        "           provenance: {watermark: false, sign: false},\n"
        "           qc: {enabled: false}}\n"
        "portraits: {astro: astronaut.jpg}\n"
        "audio: {" + ", ".join(f"{name}: {name}.wav" for name in SECONDS) + "}\n"
        "jobs:\n  - {portrait: astro, audio: fail, settings: {testbars: {fail_at_frame: 0}}}\n"
        "matrix: {portraits: [astro], audio: [" + ", ".join(name for name in SECONDS if name != "fail") + "]}\n"
    )
    return manifest


def lines_of(screen: pyte.Screen) -> list[str]:
    return [line.rstrip() for line in screen.display]


def scrolled(screen: pyte.HistoryScreen) -> list[str]:
    """The lines that scrolled off the top of the screen, oldest first."""
    return ["".join(line[x].data for x in sorted(line)).rstrip() for line in screen.history.top]


def test_thirty_jobs_on_four_workers_in_a_twelve_row_terminal(tmp_path, test_backends):
    manifest = project(tmp_path)
    order = longest_first(plan_manifest(manifest).jobs)  # the order the pool hands jobs out
    assert [job.name for job in order[:2]] == ["astro/fail", "astro/held"]
    held_job, paused, finished = order[1], [job.name for job in order[10:14]], [job.name for job in order[2:10]]
    frames = sum(job.num_frames for job in order[1:])  # the failed job's frames will not come
    held_job.work_dir.mkdir(parents=True)
    lease = JobLease.claim(held_job.work_dir)
    assert lease is not None
    fifo = tmp_path / "pause.fifo"
    os.mkfifo(fifo)
    os.mkfifo(f"{fifo}.release")  # the four paused workers wait there, not on each other's announcements
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in emo_env().items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    env.update(TERM="xterm-256color", EMO_TEST_PAUSE_FIFO=str(fifo),
               EMO_TEST_PAUSE_AT=",".join(f"render:1@{name}" for name in paused))  # fmt: skip
    proc = subprocess.Popen([*EMO, "render", "--devices", "cpu:4", "--no-report", str(manifest)], env=env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)  # fmt: skip
    os.close(slave)
    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=1000)
    stream = pyte.ByteStream(screen)
    announced = b""
    counts = "4 running, 16 waiting, 8 done, 1 failed, 1 held"
    try:
        deadline = time.monotonic() + DEADLINE_S
        while announced.count(b"\n") < len(paused) or lines_of(screen)[-1].strip() != counts:
            assert proc.poll() is None, "\n".join(scrolled(screen) + lines_of(screen))
            assert time.monotonic() < deadline, "\n".join([announced.decode(), *scrolled(screen), *lines_of(screen)])
            ready, _, _ = select.select([master, reader], [], [], 0.5)
            if master in ready:
                stream.feed(os.read(master, 65536))  # the render blocks if nobody reads its terminal
            if reader in ready:
                try:
                    announced += os.read(reader, 1000)
                except BlockingIOError:
                    pass
        # Where the live region is now (its last line is the counts), and what it shows.
        shown = lines_of(screen)
        assert sorted(announced.decode().split()) == sorted(f"render:1@{name}" for name in paused)
        region = shown.index(next(line for line in shown if line.startswith("30 jobs")))
        assert re.match(rf"30 jobs .+ \d+/{frames} frames", shown[region]), shown[region]
        for name in paused:  # every running job has its line, with its worker's device
            assert [line for line in shown[region:] if re.match(rf"\s+{name} cpu:[0-3] ", line)], shown
        # Above the region: one line per finished job, nothing of the region left behind.
        above = scrolled(screen) + shown[:region]
        done = [line for line in above if line.strip().startswith("done")]
        assert sorted(line.split()[1] for line in done) == sorted(finished)
        assert [line.split()[:3] for line in above if line.strip().startswith("failed")] == [
            ["failed", "job", "astro/fail"]
        ]
        assert [line.split()[:2] for line in above if line.strip().startswith("waiting")] == [
            ["waiting", "astro/held:"]
        ]
        assert not [line for line in above if line.startswith("30 jobs") or "running," in line]  # no stale region
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(master)
        os.close(reader)
        lease.release()
