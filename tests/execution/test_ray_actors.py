"""On Ray, one actor per device holds the backend: its model loads once per actor, not per job.

GPU actors are the case that matters: Ray gives every GPU *task* a fresh worker process, so a
task per job would load the model for every job. (`emo render --executor ray` end to end is
tested in tests/cli/test_render_scaleout.py.)
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from factories import PLUGINS, make_job, write_wav
from test_ray import local_ray  # noqa: F401  (the fixture: a local Ray with 2 CPUs and 2 fake GPUs)

from emo_cli.execution.pool import DONE, PoolEvent
from emo_cli.execution.worker import RESUME_JOB

pytest.importorskip("ray")


@pytest.fixture
def ray_with_plugins(request, monkeypatch, tmp_path, test_backends):
    """The local Ray, started with tests/plugins importable and backend loads logged to a file."""
    loads = tmp_path / "loads.txt"
    monkeypatch.setenv("EMO_TEST_BACKEND_LOADS", str(loads))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    request.getfixturevalue("local_ray")
    return loads


def test_each_gpu_actor_loads_its_backend_once_for_many_jobs(ray_with_plugins, tmp_path):
    from emo_cli.execution.ray_executor import run_on_ray

    voices = [write_wav(tmp_path / f"voice{i}.wav", 0.4 + 0.1 * i, seed=i) for i in range(5)]
    jobs = [make_job(tmp_path / "out", audio=voice, chunk_frames=5) for voice in voices]
    events: list[PoolEvent] = []
    summary = run_on_ray(jobs, RESUME_JOB, num_gpus=1, num_cpus=0.5, on_event=events.append)

    assert [o.status for o in summary.outcomes.values()] == [DONE] * 5
    assert all(job.output.is_file() for job in jobs)
    assert {o.device.split("/")[1] for o in summary.outcomes.values()} <= {"cuda:0", "cuda:1"}
    loads = Counter(int(pid) for pid in ray_with_plugins.read_text().split())
    rendered_by = Counter(e.data["pid"] for e in events if e.kind == "started")
    assert sum(rendered_by.values()) == 5
    assert set(loads) == set(rendered_by)  # the actors that rendered are the ones that loaded
    assert all(count == 1 for count in loads.values())  # once per actor
    assert len(loads) <= 2 < 5  # two GPUs: at most two actors, for five jobs

    # One actor: every job in one process, the backend loaded once (whatever Ray's reuse of
    # task workers would have done).
    ray_with_plugins.unlink()
    again = [make_job(tmp_path / "again", audio=voice, chunk_frames=5) for voice in voices[:3]]
    events.clear()
    summary = run_on_ray(again, RESUME_JOB, num_gpus=1, num_cpus=0.5, on_event=events.append, actors=1)
    assert [o.status for o in summary.outcomes.values()] == [DONE] * 3
    assert len({e.data["pid"] for e in events if e.kind == "started"}) == 1
    assert len(ray_with_plugins.read_text().split()) == 1
