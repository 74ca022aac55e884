"""`emo render` output for logs and CI: whole lines, heartbeats, resume notes, stamped JSON."""

from __future__ import annotations

import io
import json
import re
import shutil

from factories import PORTRAIT, run_emo, write_wav
from rich.console import Console

from emo_cli.cli.render import PlainLog, stamped
from emo_cli.execution.results import RenderEvent

STARTED = {"event": "job_started", "job_id": "a" * 64, "job": "anna/fr", "output": "/o/anna/fr.mp4",
           "frames": 100, "fps": 25, "chunks": 5, "chunks_reused": 3, "frames_reused": 60}  # fmt: skip


def plain(**options):
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=False)
    clock = iter([0.0, 10.0, 20.0]).__next__
    log = PlainLog(console, clock=clock, **options)
    return (lambda event: log(RenderEvent.from_dict(event))), log, out


def test_plain_log_announces_a_resume_and_beats_with_this_runs_rate():
    send, log, out = plain()
    send(STARTED)  # clock 0
    send({**STARTED, "event": "chunk_done", "chunk": 3, "count": 20, "frames_done": 80, "seconds": 9.0})
    log.heartbeat()  # clock 10: 20 frames rendered in this run over 10 s, not 80 over 10
    send({"event": "job_done", "job_id": STARTED["job_id"], "job": "anna/fr", "output": "/o/" + "x" * 80 + ".mp4",
         "seconds": 12.0})  # fmt: skip
    log.heartbeat()  # clock 20: nothing runs any more
    lines = out.getvalue().splitlines()
    assert lines == [
        "resuming anna/fr: 3/5 chunks reused",
        "running  anna/fr: 80/100 frames, 2.0 frames/s",
        "done     anna/fr -> /o/" + "x" * 80 + ".mp4 (12.0 s)",  # one line, wider than the console
    ]


def test_quiet_keeps_failures_and_verbose_adds_chunks():
    send, log, out = plain(quiet=True)
    send(STARTED)
    send({"event": "job_held", "job_id": "b", "job": "b/c", "holder": "host:12"})
    send({"event": "job_failed", "job_id": "c", "job": "c/d", "error": "job c/d (portraits.c): no face"})
    assert out.getvalue().splitlines() == ["failed   job c/d (portraits.c): no face"]
    send, log, out = plain(verbose=True)
    send({**STARTED, "chunks_reused": 0, "frames_reused": 0})
    send({**STARTED, "event": "chunk_done", "chunk": 0, "count": 20, "frames_done": 20})
    send({"event": "job_held", "job_id": "b", "job": "b/c", "holder": "host:12"})
    send({"event": "job_held", "job_id": "b", "job": "b/c", "holder": "host:12"})  # the pool's retry
    assert out.getvalue().splitlines() == [
        "started  anna/fr: 100 frames in 5 chunks",
        "chunk    anna/fr: 1/5, 20/100 frames",
        "waiting  b/c: host:12 renders it (its lease is held)",
    ]


def test_json_events_carry_schema_time_and_rounded_floats():
    event = stamped(RenderEvent.of("chunk_done", seconds=1.23456789, nested={"rate": [2.0000001]}))
    assert list(event)[:2] == ["schema", "time"] and event["schema"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    assert event["seconds"] == 1.235 and event["nested"] == {"rate": [2.0]}


MANIFEST = """\
version: 1
output_dir: out
output: "{portrait}/a-rather-long-folder-name-that-would-wrap-at-eighty-columns/{audio}.mp4"
defaults: {backend: testbars, fps: 25, resolution: 64, seed: 0, chunk_frames: 10}
portraits: {astro: astronaut.jpg}
audio: {voice: voice.wav}
jobs:
  - {portrait: astro, audio: voice}
"""


def test_piped_render_prints_whole_lines_and_a_log_file(tmp_path):
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.6)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST)
    log = tmp_path / "logs" / "render.jsonl"
    proc = run_emo("render", "--executor", "inline", "--log-file", str(log), str(manifest), timeout=60,
                   COLUMNS="80")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    output = str(
        tmp_path
        / "out"
        / "astro"
        / "a-rather-long-folder-name-that-would-wrap-at-eighty-columns"
        / "voice.mp4"
    )
    assert f"done     astro/voice -> {output} (" in proc.stdout  # the path whole, on the done line
    assert any(
        output in line and "done" in line for line in proc.stdout.splitlines()[1:]
    )  # the summary row too
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events][0] == "run_started" and events[-1]["event"] == "run_done"
    assert all(e["schema"] == 1 and e["time"].endswith("Z") for e in events)
    assert events[-1]["done"] == 1

    quiet = run_emo("render", "--executor", "inline", "-q", str(manifest), timeout=60)
    assert quiet.returncode == 0 and quiet.stdout == "1 skipped\n"
