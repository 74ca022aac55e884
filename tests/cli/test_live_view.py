"""The live view in a 12-row terminal: bounded, every running job shown, honest rates."""

from __future__ import annotations

import io

from rich.console import Console

from emo_cli.cli.render import ProgressView
from emo_cli.execution.results import RenderEvent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def terminal(rows: int = 12) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100, height=rows, color_system=None)


def screen(view: ProgressView) -> list[str]:
    console = view.console
    lines = console.render_lines(view.renderable(), console.options, pad=False)
    return ["".join(segment.text for segment in line).rstrip() for line in lines]


def started(i: int, reused: int = 0) -> RenderEvent:
    return RenderEvent.from_dict({"event": "job_started", "job_id": f"{i:064d}", "job": f"portrait{i:02d}/track", "frames": 100,
            "chunks": 5, "chunks_reused": reused // 20, "frames_reused": reused, "device": f"cpu:{i % 4}"})  # fmt: skip


def done(i: int) -> RenderEvent:
    return RenderEvent.from_dict({"event": "job_done", "job_id": f"{i:064d}", "job": f"portrait{i:02d}/track",
            "output": f"/out/portrait{i:02d}/track.mp4", "seconds": 4.0})  # fmt: skip


def chunk(i: int, frames_done: int) -> RenderEvent:
    return RenderEvent.from_dict({"event": "chunk_done", "job_id": f"{i:064d}", "job": f"portrait{i:02d}/track", "chunk": 0,
            "chunks": 5, "count": 20, "frames_done": frames_done, "frames": 100})  # fmt: skip


def test_thirty_jobs_in_twelve_rows_show_every_running_job_and_the_counts():
    clock = Clock()
    view = ProgressView(terminal(12), clock=clock)
    view(RenderEvent.from_dict({"event": "run_started", "jobs": 30, "frames": 3000}))
    for i in range(24):  # 24 jobs finish, 4 at a time
        view(started(i))
        clock.now += 1
        view(chunk(i, 100))
        view(done(i))
    for i in range(24, 28):
        view(started(i))
    clock.now += 2
    view(chunk(24, 40))
    lines = screen(view)
    assert len(lines) <= 12
    for i in range(24, 28):
        assert any(f"portrait{i:02d}/track" in line for line in lines), lines
    assert not any("portrait03/track" in line for line in lines)  # finished jobs left the region
    assert lines[-1].strip() == "4 running, 2 waiting, 24 done"
    assert "2640/3000" not in lines[0] and "2440/3000 frames" in lines[0]


def test_more_running_jobs_than_rows_say_how_many_are_hidden():
    view = ProgressView(terminal(12), clock=Clock())
    view(RenderEvent.from_dict({"event": "run_started", "jobs": 30, "frames": 3000}))
    for i in range(16):
        view(started(i))
    lines = screen(view)
    assert len(lines) <= 12
    assert "... and 8 more running" in lines[-2] and lines[-1].strip().startswith("16 running, 14 waiting")


def test_rates_count_only_frames_rendered_in_this_run():
    clock = Clock()
    view = ProgressView(terminal(12), clock=clock)
    view(RenderEvent.from_dict({"event": "run_started", "jobs": 1, "frames": 100}))
    view(started(0, reused=60))  # resumed: 60 frames on disk before this run
    clock.now = 10.0
    view(chunk(0, 80))  # 20 frames in 10 s
    lines = screen(view)
    assert "2.0 frames/s" in lines[0] and "80/100 frames" in lines[0] and "ETA 0:00:10" in lines[0]
    assert "2.0 frames/s" in lines[1]
    out = view.console.file.getvalue()
    assert "resuming portrait00/track: 3/5 chunks reused" in out


def test_a_held_job_counts_once_however_often_the_pool_tries_it_again():
    view = ProgressView(terminal(12), clock=Clock())
    view(RenderEvent.from_dict({"event": "run_started", "jobs": 3, "frames": 300}))
    held = RenderEvent.from_dict({"event": "job_held", "job_id": f"{1:064d}", "job": "portrait01/track",
                                  "holder": "host:12"})  # fmt: skip
    view(held)
    view(held)  # the pool tries a held job again every few seconds
    assert screen(view)[-1].strip() == "0 running, 2 waiting, 1 held"
    assert view.console.file.getvalue().count("waiting  portrait01/track") == 1
    view(started(1))  # its holder let go: it runs here now
    assert screen(view)[-1].strip() == "1 running, 2 waiting"
