"""`emo render` with quality gates, end to end: the per-chunk gates run inside the local pool's
worker processes and Ray's actors (the job carries its `qc` settings), their records reach the
JSON events and the journal, and the QC report is written into the output_dir at the end."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from factories import ASSETS, PORTRAIT, run_emo

from emo_cli.execution.results import RenderEvent, stamped
from emo_cli.execution.workdir import Journal

pytestmark = pytest.mark.slow

MANIFEST = """\
version: 1
output_dir: out
defaults:
  backend: warp
  resolution: 256
  qc: {on_fail: fail}
portraits: {astro: astronaut.jpg}
audio: {en: hello_en.wav}
jobs:
  - {portrait: astro, audio: en}
"""



def as_printed(record: dict) -> dict:
    """A journal's QC record as a --json event carries it (floats rounded, see `stamped`)."""
    return stamped(RenderEvent.of("chunk_done", qc=record))["qc"]

def project(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(PORTRAIT, folder / "astronaut.jpg")
    shutil.copy(ASSETS / "hello_en.wav", folder / "hello_en.wav")
    (folder / "m.yaml").write_text(MANIFEST)
    return folder / "m.yaml"


def rendered(manifest: Path, *args: str, **env: str) -> tuple[list[dict], dict[int, dict]]:
    proc = run_emo("render", "--json", *args, str(manifest), timeout=300, **env)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    (work,) = (manifest.parent / "out" / ".emo" / "jobs").iterdir()
    journal = Journal.load(work)
    assert journal is not None
    return events, {i: rec.qc for i, rec in journal.chunks.items()}


def test_pool_workers_and_ray_actors_judge_chunks_and_the_report_is_written(tmp_path):
    manifest = project(tmp_path / "pool")
    events, records = rendered(manifest)  # the local executor: a worker process renders the job
    chunks = [e for e in events if e["event"] == "chunk_done"]
    assert len(chunks) == len(records) == 4
    assert [e["qc"] for e in chunks] == [as_printed(records[i]) for i in range(4)]
    assert all(r["passed"] and r["figures"]["measured"] == 3 for r in records.values())
    (done,) = [e for e in events if e["event"] == "job_done"]
    assert done["qc"]["passed"] and done["qc"]["video"]["passed"]
    assert events[-1]["event"] == "run_done" and events[-1]["jobs"][0]["qc"] == "pass"
    report = json.loads((manifest.parent / "out" / "report.json").read_text())
    assert report["passed"] and [j["job"] for j in report["jobs"]] == ["astro/en"]
    assert (manifest.parent / "out" / "report.html").is_file()

    # Finished: skipped, and with --no-report no report is written.
    for name in ("report.json", "report.html"):
        (manifest.parent / "out" / name).unlink()
    proc = run_emo("render", "--no-report", str(manifest), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "QC report" not in proc.stdout and not (manifest.parent / "out" / "report.html").exists()

    # On Ray the actor measures the same frames to the same figures.
    ray_dir = tempfile.mkdtemp(prefix="ray")  # under the system temp dir: Ray's socket paths must be short
    try:
        events, on_ray = rendered(project(tmp_path / "ray"), "--executor", "ray", "--no-report",
                                  RAY_TMPDIR=ray_dir, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")  # fmt: skip
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert on_ray == records
    assert [e["qc"] for e in events if e["event"] == "chunk_done"] == [as_printed(records[i]) for i in range(4)]
