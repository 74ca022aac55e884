"""`settings.qc.on_fail: retry` on the emo backend (tiny weights): the chunk that fails its gate
is rendered again with the next seed, and only that chunk; a run killed in the middle of the
retry and resumed gives the same bytes as an uninterrupted one.

The backend is `emoface` (tests/plugins): the real emo renderer drawn in a corner of the
portrait (so the face mesh has a face to measure), with a colour cast on the chunk at frames
20-29 whenever that chunk is rendered with the job's own seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from factories import DRIVER, driver_env, kill_at, write_wav

from emo_cli.execution.journal import Journal

SEED = 7
# The cast chunk fails on the face's colour shift; the corner the emo frames are drawn in is
# background, whose shift is not what this test is about.
QC = {"enabled": True, "on_fail": "retry", "retries": 2, "video": False, "max_delta_e_background": 100}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("voice") / "voice.wav", 1.5)  # 38 frames: chunks of 10, 10, 10, 8


def spec(folder: Path, voice: Path, weights: Path, qc: dict) -> Path:
    folder.mkdir(exist_ok=True)
    job = {"audio": str(voice), "backend": "emoface", "resolution": 256, "chunk_frames": 10, "seed": SEED,
           "options": {"weights": str(weights), "steps": 2, "cast_at_frame": 20}, "qc": qc}  # fmt: skip
    path = folder / "spec.json"
    path.write_text(json.dumps({"output_dir": str(folder / "out"), "jobs": [job]}))
    return path


def run(path: Path, **env: str) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, str(DRIVER), str(path)], env=driver_env(**env), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def journal_of(folder: Path) -> Journal:
    (work,) = (folder / "out" / ".emo" / "jobs").iterdir()
    journal = Journal.load(work)
    assert journal is not None
    return journal


def rendered(log: Path) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in line.split()) for line in log.read_text().splitlines()]


def test_retry_renders_exactly_the_failing_chunk_and_a_killed_retry_resumes_to_the_same_bytes(
    emo_weights, voice, tmp_path
):
    # With warn, the cast chunk is reported and kept: the gate does fail it.
    code, events = run(spec(tmp_path / "warn", voice, emo_weights, {**QC, "on_fail": "warn"}))
    assert code == 0
    warned = journal_of(tmp_path / "warn")
    assert [rec.qc["passed"] for _, rec in sorted(warned.chunks.items())] == [True, True, False, True]
    assert any("delta_e_face" in f for f in warned.chunks[2].qc["failed"])
    assert events[-1]["jobs"][0]["qc"].startswith("fail: chunk 2: delta_e_face")

    # With retry: chunk 2 is rendered twice (seed 7 fails, seed 8 passes), the others once.
    log = tmp_path / "rendered.txt"
    code, events = run(spec(tmp_path / "retry", voice, emo_weights, QC), EMO_TEST_RENDERED_CHUNKS=str(log))
    assert code == 0, events
    assert rendered(log) == [(0, SEED), (10, SEED), (20, SEED), (20, SEED + 1), (30, SEED)]
    retried = journal_of(tmp_path / "retry")
    record = retried.chunks[2].qc
    assert (record["passed"], record["seed"]) == (True, SEED + 1)
    assert [(a["seed"], a["passed"]) for a in record["retried"]] == [(SEED, False)]
    assert [retried.chunks[i].qc["retried"] for i in (0, 1, 3)] == [[], [], []]
    done = [e for e in events if e["event"] == "chunk_done"]
    assert [e["qc"]["seed"] for e in done] == [SEED, SEED, SEED + 1, SEED]
    assert events[-1]["jobs"][0]["qc"] == "pass"
    # The states after chunks 0 and 1 are the warn run's; after chunk 2, the new seed's. (The segments
    # differ throughout: with retry the qc settings are in the job id, which the watermark carries.)
    assert retried.job_id != warned.job_id
    assert [retried.chunks[i].state_sha256 == warned.chunks[i].state_sha256 for i in range(4)] == [
        True, True, False, False]

    # Killed while chunk 2 is rendered again, then resumed: the same chunks, byte for byte.
    killed = spec(tmp_path / "killed", voice, emo_weights, QC)
    kill_at(killed, "retry:2", tmp_path / "pause.fifo", deadline_s=300)
    # Chunk 1 is committed once half of chunk 2's frames are fed, after chunk 2 is judged.
    assert sorted(journal_of(tmp_path / "killed").chunks) == [0]
    code, events = run(killed)
    assert code == 0
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [1, 2, 3]
    resumed = journal_of(tmp_path / "killed")
    assert {i: (r.segment_sha256, r.state_sha256, r.qc) for i, r in resumed.chunks.items()} == {
        i: (r.segment_sha256, r.state_sha256, r.qc) for i, r in retried.chunks.items()
    }
    assert resumed.audio_sha256 == retried.audio_sha256
