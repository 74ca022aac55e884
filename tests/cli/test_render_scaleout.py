"""`emo render` with worker pools, shards and Ray, end to end in real processes.

The pool and Ray executors are tested on their own in tests/execution; these tests drive the
real command with a real backend (`testbars`) and check the render-level guarantees: a worker
killed mid-job is restarted and the video is identical to an uninterrupted one; two renders on
one manifest render every chunk exactly once; shards cover every job once.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
from factories import EMO, PORTRAIT, decoded_frames, emo_env, run_emo, write_wav

DEADLINE_S = 120

MANIFEST = """\
version: 1
output_dir: out
output: "{portrait}/{audio}.mp4"
defaults: {backend: testbars, fps: 25, resolution: 64, seed: 0, chunk_frames: 10}
portraits: {astro: astronaut.jpg}
audio: {a: a.wav, b: b.wav, c: c.wav, d: d.wav}
matrix: {portraits: [astro], audio: [a, b, c, d]}
"""


def env(**extra: str) -> dict[str, str]:
    return emo_env(**extra)


def emo_argv(*args: str) -> list[str]:
    return [*EMO, *args]


def emo(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return run_emo(*args, timeout=DEADLINE_S, **extra_env)


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PORTRAIT, folder / "astronaut.jpg")
    for seed, (name, seconds) in enumerate({"a": 1.9, "b": 1.4, "c": 1.1, "d": 0.7}.items()):
        write_wav(folder / f"{name}.wav", seconds, seed=seed)
    manifest = folder / "m.yaml"
    manifest.write_text(MANIFEST)
    return manifest


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every job rendered once, uninterrupted, in-process order: frames by job name."""
    manifest = project(tmp_path_factory.mktemp("reference"))
    proc = emo("render", "--json", "--devices", "cpu:1", str(manifest))
    assert proc.returncode == 0, proc.stderr
    done = [e for e in events_of(proc.stdout) if e["event"] == "job_done"]
    assert len(done) == 4
    return {e["job"]: decoded_frames(Path(e["output"])) for e in done}


def wait_for_announcement(fifo_fd: int, proc: subprocess.Popen) -> str:
    announced, deadline = b"", time.monotonic() + DEADLINE_S
    while not announced.endswith(b"\n"):
        assert proc.poll() is None, "the render ended before reaching the pause point"
        assert time.monotonic() < deadline, "the render did not reach the pause point"
        if not select.select([fifo_fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fifo_fd, 100)
        except BlockingIOError:  # readable was the hang-up of a writer gone; a new one has opened
            continue
        if not chunk:  # no writer at the moment (a worker was killed): poll until the next opens
            time.sleep(0.05)
        announced += chunk
    return announced.decode().strip()


def test_worker_killed_mid_job_is_restarted_and_the_video_is_identical(tmp_path, reference):
    manifest = project(tmp_path)
    fifo = tmp_path / "pause.fifo"
    os.mkfifo(fifo)
    # The longest job (astro/a, 48 frames) goes first; its worker freezes before chunk 2.
    proc = subprocess.Popen(
        emo_argv("render", "--json", "--devices", "cpu:1", "--only", "astro/a", str(manifest)),
        env=env(EMO_TEST_PAUSE_AT="render:2", EMO_TEST_PAUSE_FIFO=str(fifo)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        assert wait_for_announcement(reader, proc) == "render:2"
        (worker,) = [  # the pool's one worker process (spawned; not multiprocessing's resource tracker)
            child for child in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(child.cmdline())
        ]
        worker.kill()
        # The restarted worker resumes the job from its last chunk and reaches the point again.
        assert wait_for_announcement(reader, proc) == "render:2"
        os.close(reader)
        with open(fifo, "w"):  # let it go on
            pass
        stdout, stderr = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    events = events_of(stdout)
    retrying = [e for e in events if e["event"] == "job_retrying"]
    assert len(retrying) == 1 and "SIGKILL" in retrying[0]["cause"] and retrying[0]["job"] == "astro/a"
    started = [e for e in events if e["event"] == "job_started"]
    assert [e["chunks_reused"] for e in started] == [0, 1]  # chunk 1 was still being encoded
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [0, 1, 2, 3, 4]
    (done,) = [e for e in events if e["event"] == "job_done"]
    frames = decoded_frames(Path(done["output"]))
    assert len(frames) == len(reference["astro/a"]) == 48
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference["astro/a"], strict=True))


def test_two_concurrent_renders_render_every_chunk_exactly_once(tmp_path, reference):
    manifest = project(tmp_path)
    procs = [
        subprocess.Popen(emo_argv("render", "--json", "--devices", "cpu:1", str(manifest)), env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=DEADLINE_S) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    events = [e for stdout, _ in outputs for e in events_of(stdout)]
    done = Counter(e["job"] for e in events if e["event"] == "job_done")
    assert done == Counter({"astro/a": 1, "astro/b": 1, "astro/c": 1, "astro/d": 1})
    chunks = Counter((e["job"], e["chunk"]) for e in events if e["event"] == "chunk_done")
    assert set(chunks.values()) == {1} and len(chunks) == 5 + 4 + 3 + 2
    for event in events:
        if event["event"] == "job_done":
            frames = decoded_frames(Path(event["output"]))
            assert all(np.array_equal(a, b) for a, b in zip(frames, reference[event["job"]], strict=True))


def test_shards_cover_every_job_once_and_a_bad_shard_exits_2(tmp_path):
    manifest = project(tmp_path)
    rendered = []
    for index in range(3):
        proc = emo("render", "--json", "--devices", "cpu:1", "--shard", f"{index}/3", str(manifest))
        assert proc.returncode == 0, proc.stderr
        events = events_of(proc.stdout)
        assert events[0]["shard"] == f"{index}/3"
        rendered += [e["job"] for e in events if e["event"] == "job_done"]
    assert sorted(rendered) == ["astro/a", "astro/b", "astro/c", "astro/d"]
    proc = emo("render", "--shard", "3/3", str(manifest))
    assert proc.returncode == 2 and "--shard 3/3" in proc.stderr


def test_ray_executor_renders_the_manifest(tmp_path, reference):
    pytest.importorskip("ray")
    manifest = project(tmp_path)
    ray_dir = Path(__import__("tempfile").mkdtemp(prefix="ray", dir="/tmp"))  # socket paths must be short
    try:
        proc = emo(
            "render", "--json", "--executor", "ray", str(manifest),
            RAY_TMPDIR=str(ray_dir), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    done = {e["job"]: e for e in events if e["event"] == "job_done"}
    assert sorted(done) == ["astro/a", "astro/b", "astro/c", "astro/d"]
    summary = events[-1]
    assert summary["event"] == "run_done" and summary["done"] == 4
    assert all(job["device"] and "/cpu" in job["device"] for job in summary["jobs"])
    for name, event in done.items():
        frames = decoded_frames(Path(event["output"]))
        assert all(np.array_equal(a, b) for a, b in zip(frames, reference[name], strict=True))
