"""Build render jobs straight from files (no manifest), and small media fixtures."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from emo_cli.fsutil import sha256_file
from emo_cli.media.audio import decode_audio
from emo_cli.media.formats import format_for
from emo_cli.planning.fingerprint import job_id
from emo_cli.planning.job import Job, Plan, Settings, Source

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
ASSETS = REPO / "manifests" / "assets"
PORTRAIT = ASSETS / "astronaut.jpg"
SPEECH = ASSETS / "hello_en.wav"
DRIVER = REPO / "tests" / "render_driver.py"  # renders a JSON job spec, one JSON event per line


def make_job(
    output_dir: Path,
    portrait: Path = PORTRAIT,
    audio: Path = SPEECH,
    *,
    name: str | None = None,
    backend: str = "testbars",
    fps: int = 25,
    resolution: int = 64,
    seed: int = 0,
    chunk_frames: int = 10,
    options: dict[str, Any] | None = None,
    output: str | None = None,
    duration: float | None = None,
    qc: dict[str, Any] | None = None,
) -> Job:
    """A job as the planner would make it: its id from the planner's own recipe (`job_id`),
    the output (format by its suffix) under output_dir."""
    output_dir = Path(output_dir).resolve()
    portrait, audio = Path(portrait).resolve(), Path(audio).resolve()
    output = output or f"{portrait.stem}/{audio.stem}.mp4"
    settings = Settings(backend, fps, resolution, seed, chunk_frames, dict(options or {}),
                        format=format_for(output).name, qc=dict(qc or {}))  # fmt: skip
    portrait_src = Source(portrait.stem, portrait, sha256_file(portrait), f"portraits.{portrait.stem}")
    audio_src = Source(audio.stem, audio, sha256_file(audio), f"audio.{audio.stem}")
    name = name or f"{portrait.stem}/{audio.stem}"
    return Job(
        id=job_id(portrait_sha256=portrait_src.sha256, audio_sha256=audio_src.sha256, settings=settings,
                  backend_version="1.0", weights_identity="none"),  # fmt: skip
        name=name,
        portrait=portrait_src,
        audio=audio_src,
        settings=settings,
        output=output_dir / output,
        output_dir=output_dir,
        manifest=output_dir / "manifest.yaml",
        field=f"jobs[{name}]",
        duration=duration if duration is not None else len(decode_audio(audio, 16000)) / 16000,
        backend_version="1.0",
        weights_identity="none",
    )


def make_plan(output_dir: Path, jobs: list[Job]) -> Plan:
    return Plan(manifest=Path(output_dir).resolve() / "manifest.yaml", output_dir=Path(output_dir).resolve(),
                jobs=tuple(jobs))


def write_wav(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> Path:
    """A speech-like test tone: a gliding pitch with syllable-rate loudness and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    signal = envelope * np.sin(2 * np.pi * np.cumsum(pitch) / rate) * 0.5 + rng.normal(0, 0.02, t.size)
    return write_samples(path, signal, rate)


def write_samples(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every video frame of `path`, decoded to RGB."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


EMO = [sys.executable, "-m", "emo_cli"]


def emo_env(**extra: str) -> dict[str, str]:
    """The environment of an `emo` subprocess: this checkout and tests/plugins importable, no
    pause points of the caller's. EMO_CONFIG_DIR (the session's temporary config dir) stays."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMO_TEST_")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), str(PLUGINS)])
    return {**base, **extra}


def run_emo(*args: str, timeout: float, **extra_env: str) -> subprocess.CompletedProcess:
    """`emo ARGS` in a fresh process; stdout and stderr captured as text."""
    return subprocess.run([*EMO, *args], env=emo_env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def driver_env(**extra: str) -> dict[str, str]:
    """The environment for `tests/render_driver.py`: no inherited test hooks, the test plugins on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_TEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(PLUGINS), str(REPO / "tests")])
    return {**env, **extra}


def run_to_pause(argv: list[str], point: str, fifo: Path, env: dict[str, str], deadline_s: float = 60,
                 **popen: Any) -> subprocess.Popen:  # fmt: skip
    """Start `argv` in a new session and return it once it announces the pause point `point`:
    it is then blocked there (until killed), so the caller acts at a known moment, not a guessed one."""
    os.mkfifo(fifo)
    proc = subprocess.Popen(argv, env={**env, "EMO_TEST_PAUSE_AT": point, "EMO_TEST_PAUSE_FIFO": str(fifo)},
                            stderr=subprocess.PIPE, start_new_session=True, **popen)  # fmt: skip
    try:
        # Non-blocking open: if the process dies before the point, we notice instead of hanging.
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        announced = b""
        deadline = time.monotonic() + deadline_s
        while not announced.endswith(b"\n"):
            if proc.poll() is not None:
                err = proc.stderr.read()
                raise AssertionError(f"{argv} ended before {point}: {err.decode() if isinstance(err, bytes) else err}")
            assert time.monotonic() < deadline, f"{argv} did not reach {point}"
            ready, _, _ = select.select([reader], [], [], 0.5)
            if ready:
                announced += os.read(reader, 100)
        os.close(reader)
        assert announced.decode().strip() == point
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc


def kill_at(spec: Path, point: str, fifo: Path, deadline_s: float = 60) -> None:
    """Run the render driver on `spec` until it reaches the pause point `point`, then SIGKILL it
    and its ffmpeg children (a new session, killed as a group)."""
    proc = run_to_pause([sys.executable, str(DRIVER), str(spec)], point, fifo, driver_env(), deadline_s,
                        stdout=subprocess.DEVNULL)  # fmt: skip
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
