"""Training windows read from a prepared dataset: exact frames, stateless sampling, face region."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from synthetic import RESOLUTION, prepared_dataset

from emo_cli.errors import InputError
from emo_cli.training.data import TrainingData, face_region


@pytest.fixture
def prepared(tmp_path_factory):
    return prepared_dataset(tmp_path_factory)


def _all_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("start", [0, 7, 24, 25, 26])
def test_a_window_is_the_slice_of_the_whole_clip_bit_for_bit(prepared, start):
    folder, *_ = prepared
    data = TrainingData(folder / "data", split="all")
    clip = data.clips[0]
    whole = _all_frames(data.root / clip["files"]["frames"]["path"])
    window = data.window(0, start, 14)
    np.testing.assert_array_equal(window.frames, whole[start : start + 14])
    np.testing.assert_array_equal(window.speeds, np.load(data.root / clip["files"]["speed"]["path"])[start : start + 14])
    assert window.audio.shape == (clip["frames"] * 640,) and window.clip_frames == clip["frames"]
    assert window.face_mask.shape == (RESOLUTION, RESOLUTION)
    with pytest.raises(ValueError, match="outside clip"):
        data.window(0, clip["frames"] - 13, 14)


def test_sampling_is_a_pure_function_of_seed_and_step_and_covers_every_clip(prepared):
    folder, *_ = prepared
    data = TrainingData(folder / "data", split="all")
    draws = [data.sample(step, 16, seed=5) for step in range(300)]
    assert draws == [TrainingData(folder / "data", split="all").sample(step, 16, seed=5) for step in range(300)]
    assert draws != [data.sample(step, 16, seed=6) for step in range(300)]
    assert {c for c, _ in draws} == set(range(len(data.clips)))
    assert all(0 <= s <= data.clips[c]["frames"] - 16 for c, s in draws)
    assert len({s for _, s in draws}) > 15
    fixed = data.evenly_spaced(16, 4)
    assert fixed == data.evenly_spaced(16, 4) and len(fixed) == 4


def test_splits_hold_only_their_identities(prepared):
    folder, *_ = prepared
    train, val = TrainingData(folder / "data", "train"), TrainingData(folder / "data", "val")
    assert {c["identity"] for c in train.clips}.isdisjoint({c["identity"] for c in val.clips})
    assert len(train.clips) + len(val.clips) == 3
    with pytest.raises(InputError, match="has 400 frames"):
        train.sample(0, 400, seed=0)


def test_verify_finds_a_changed_file(prepared, tmp_path):
    import shutil

    folder, *_ = prepared
    shutil.copytree(folder / "data", tmp_path / "data")
    TrainingData(tmp_path / "data", "all", verify=True)
    clip = TrainingData(tmp_path / "data", "all").clips[1]
    speed = tmp_path / "data" / clip["files"]["speed"]["path"]
    np.save(speed, np.load(speed) * 2)
    with pytest.raises(InputError, match="does not match the sha256"):
        TrainingData(tmp_path / "data", "all", verify=True)


def test_face_region_is_the_grown_union_of_the_boxes():
    mask = face_region(np.array([[10, 20, 30, 40], [50, 20, 70, 40]]), 100)
    assert mask[30, 20] == 1 and mask[30, 60] == 1 and mask[30, 40] == 0  # a gap between the faces stays
    assert mask[16, 6] == 1 and mask[14, 4] == 0  # grown by a quarter: 5 px each side


def test_dataset_info_summarises_and_verifies(prepared, tmp_path, monkeypatch, capsys):
    import shutil
    import sys

    from emo_cli.cli import main

    folder, *_ = prepared
    shutil.copytree(folder / "data", tmp_path / "data")

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["emo", "dataset", "info", str(tmp_path / "data"), *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    code, out, _ = run("--json")
    summary = json.loads(out)
    assert code == 0 and summary["videos"] == 3 and summary["source_frames"] == 120
    assert {s["identities"] for s in summary["splits"].values()} == {1}
    assert summary["splits"]["train"]["frames"] + summary["splits"]["val"]["frames"] == 120
    assert summary["speed"]["p10"] <= summary["speed"]["p50"] <= summary["speed"]["p90"]
    code, out, _ = run("--verify")
    assert code == 0 and "(every file verified)" in out and "train" in out
    clip = TrainingData(tmp_path / "data", "all").clips[0]
    (tmp_path / "data" / clip["files"]["boxes"]["path"]).write_bytes(b"changed")
    code, _, err = run("--verify")
    assert code == 1 and "does not match the sha256" in err
