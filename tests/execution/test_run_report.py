"""run-report.json: every job's id, status, output hash, timings and provenance, in output_dir."""

from __future__ import annotations

import json
import re

import pytest
from factories import make_job, make_plan, write_wav

from emo_cli.execution import render
from emo_cli.fsutil import sha256_file

pytestmark = pytest.mark.usefixtures("test_backends")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_the_run_report_lists_every_job_with_its_hash_and_provenance(tmp_path):
    voice = write_wav(tmp_path / "assets" / "voice.wav", 0.6)
    other = write_wav(tmp_path / "assets" / "other.wav", 0.6, seed=2)
    out = tmp_path / "out"
    good = make_job(out, audio=voice, name="good")
    bad = make_job(out, audio=other, name="bad", options={"fail_at_frame": 3})
    events = []
    summary = render(make_plan(out, [good, bad]), executor="inline", events=events.append)
    assert summary.exit_code == 1
    report = json.loads((out / "run-report.json").read_text())
    assert events[-1]["run_report"] == str(out / "run-report.json")
    assert report["format"] == 1 and report["exit_code"] == 1 and report["executor"] == "inline"
    assert ISO_UTC.fullmatch(report["started"]) and ISO_UTC.fullmatch(report["finished"])
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 1, "held": 0}
    jobs = {entry["job"]: entry for entry in report["jobs"]}
    assert jobs["good"]["job_id"] == good.id and jobs["good"]["status"] == "done"
    assert jobs["good"]["output"] == "astronaut/voice.mp4"
    assert jobs["good"]["output_sha256"] == sha256_file(good.output)
    assert jobs["good"]["seconds"] > 0 and jobs["good"]["chunks_rendered"] == 2
    provenance = jobs["good"]["provenance"]
    assert provenance["watermark"].startswith("dwtDctSvd:") and provenance["c2pa"] == "local"
    assert ISO_UTC.fullmatch(provenance["created"]) and provenance["tool_version"]
    assert jobs["bad"]["status"] == "failed" and "fail at frame 3" in jobs["bad"]["error"]
    assert jobs["bad"]["output_sha256"] is None and jobs["bad"]["provenance"] is None

    render(make_plan(out, [good]), executor="inline", shard="0/1")
    shard = json.loads((out / "run-report.0-of-1.json").read_text())
    assert shard["shard"] == "0/1" and shard["jobs"][0]["status"] == "skipped"
    assert shard["jobs"][0]["output_sha256"] == sha256_file(good.output)


def test_each_job_keeps_its_events_from_every_run_in_its_work_dir(tmp_path):
    voice = write_wav(tmp_path / "assets" / "voice.wav", 0.6)
    out = tmp_path / "out"
    job = make_job(out, audio=voice)
    render(make_plan(out, [job]), executor="inline")
    render(make_plan(out, [job]), executor="inline")
    lines = [json.loads(line) for line in (job.work_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["job_started", "chunk_done", "chunk_done", "job_done", "job_skipped"]
    assert all(e["job_id"] == job.id and e["schema"] == 1 and ISO_UTC.fullmatch(e["time"][:19] + "Z")
               for e in lines)  # fmt: skip
