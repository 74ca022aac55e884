"""A render killed with SIGKILL at any point resumes to the same video as an uninterrupted one.

Each test runs the render in a real subprocess, freezes it at a named checkpoint (the process
announces the point through a FIFO and blocks there), SIGKILLs its whole process group (ffmpeg
children included), then renders again and compares with a render that was never interrupted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factories import DRIVER, decoded_frames, driver_env, kill_at, write_wav

from emo_cli.execution.journal import Journal, segment_name, state_name

CHUNKS = 4  # 1.5 s at 25 fps = 38 frames in chunks of 10
DEADLINE_S = 60


def write_spec(folder: Path, voice: Path) -> Path:
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"output_dir": str(folder / "out"), "jobs": [{"audio": str(voice)}]}))
    return spec


def run_to_end(spec: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, str(DRIVER), str(spec)], env=driver_env(), capture_output=True,
                          text=True, timeout=DEADLINE_S)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted render of the same job."""
    folder = tmp_path_factory.mktemp("reference")
    voice = write_wav(folder / "voice.wav", 1.5)
    events = run_to_end(write_spec(folder, voice))
    output = Path(events[-1]["jobs"][0]["output"])
    return {
        "voice": voice,
        "output": output,
        "frames": decoded_frames(output),
        "audio": decoded_audio(output),
    }


def decoded_audio(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().ravel() for frame in container.decode(audio=0)])


@pytest.mark.parametrize(
    ("point", "on_disk", "rerendered"),
    [
        ("render:1", [], [0, 1, 2, 3]),  # chunk 0 is fed to its encoder, which is still finishing
        ("render:2", [0], [1, 2, 3]),  # chunk 0 was committed while half of chunk 1 was fed
        ("encode:1", [0], [1, 2, 3]),  # mid-chunk: half of chunk 1 is in ffmpeg
        ("commit:1", [0], [1, 2, 3]),  # chunk 1's files are in place but not journaled (half of 2 is fed)
        ("mux:start", [0, 1, 2, 3], []),  # after the last chunk, before the mux
        ("mux:running", [0, 1, 2, 3], []),  # during the final mux
        ("sign", [0, 1, 2, 3], []),  # muxed, not yet signed
        ("sign:written", [0, 1, 2, 3], []),  # signed temporary complete, not renamed into place
    ],
)
def test_sigkill_then_resume_gives_the_same_video(tmp_path, reference, point, on_disk, rerendered):
    spec = write_spec(tmp_path, reference["voice"])
    kill_at(spec, point, tmp_path / "pause.fifo")

    out = tmp_path / "out"
    output = out / reference["output"].relative_to(reference["output"].parents[1])
    assert not output.exists(), "the output appears only once it is whole"
    (work,) = (out / ".emo" / "jobs").iterdir()
    journal = Journal.load(work)
    assert sorted(journal.chunks if journal is not None else []) == on_disk

    events = run_to_end(spec)
    started = next(e for e in events if e["event"] == "job_started")
    assert started["chunks_reused"] == CHUNKS - len(rerendered)
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == rerendered
    assert events[-1]["done"] == 1

    frames = decoded_frames(output)
    assert len(frames) == len(reference["frames"]) == 38
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference["frames"], strict=True))
    assert np.array_equal(decoded_audio(output), reference["audio"])
    ref_work = reference["output"].parents[1] / ".emo" / "jobs" / work.name
    for index in range(CHUNKS):
        for name in (segment_name(index), state_name(index)):
            assert (work / name).read_bytes() == (ref_work / name).read_bytes(), name
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in [*work.iterdir(), *(work / "chunks").iterdir()] if p.name.startswith(".")]
    assert leftovers == []  # what the killed run left half-written is gone too
