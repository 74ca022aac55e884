"""A prepared dataset shared by the dataset tests (made once: preparing costs seconds)."""

from __future__ import annotations

import pytest
from synthetic import SETTINGS, rotating_video

from emo_cli.training import prepare_dataset


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Three rolling portraits (0, 1 and 3 degrees per frame), two people, one dataset.

    Returns (folder, {speed: video}, summary, events); the dataset is folder / "data".
    """
    folder = tmp_path_factory.mktemp("prepare")
    videos = {speed: rotating_video(folder / f"roll{speed:g}.mp4", speed, seed=int(speed)) for speed in (0, 1, 3)}
    identities = {"roll0.mp4": "anna", "roll1.mp4": "anna", "roll3.mp4": "bob"}
    events: list[dict] = []
    summary = prepare_dataset(list(videos.values()), folder / "data", SETTINGS, identities, events=events.append)
    return folder, videos, summary, events
