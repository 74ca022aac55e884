"""The contract every stage relies on: state round-trips, atomic writes, chunk ranges."""

from __future__ import annotations

import numpy as np
import pytest

from emo_cli.backends.base import decode_state, encode_state
from emo_cli.fsutil import atomic_path, atomic_write_text
from emo_cli.planning.job import chunk_ranges, frames_for


def test_state_round_trip_keeps_arrays_and_json_values():
    state = {
        "motion": np.arange(12, dtype=np.float32).reshape(3, 4),
        "rng": {"key": np.array([1, 2, 3], dtype=np.uint64), "pos": 7},
        "history": [0.5, None, True, "x", np.zeros(2, dtype=np.uint8)],
    }
    back = decode_state(encode_state(state))
    np.testing.assert_array_equal(back["motion"], state["motion"])
    assert back["motion"].dtype == np.float32
    np.testing.assert_array_equal(back["rng"]["key"], state["rng"]["key"])
    assert back["rng"]["pos"] == 7
    assert back["history"][:4] == [0.5, None, True, "x"]
    assert back["history"][4].dtype == np.uint8


def test_state_refuses_objects_it_cannot_store_without_pickle():
    with pytest.raises(TypeError, match=r"state\.obj"):
        encode_state({"obj": object()})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "final.mp4"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    atomic_write_text(target, "whole")
    assert target.read_text() == "whole"
    assert [p.name for p in target.parent.iterdir()] == ["final.mp4"]


@pytest.mark.parametrize(
    ("duration", "fps", "frames"), [(2.0, 25, 50), (2.01, 25, 51), (0.001, 25, 1), (6.408313, 25, 161)]
)
def test_frames_are_ceil_of_duration_times_fps(duration, fps, frames):
    assert frames_for(duration, fps) == frames


def test_chunk_ranges_cover_every_frame_once():
    ranges = chunk_ranges(161, 50)
    assert ranges == [(0, 50), (50, 50), (100, 50), (150, 11)]
    assert sum(count for _, count in ranges) == 161


def test_atomic_writes_get_the_permissions_of_a_plainly_created_file(tmp_path):
    """mkstemp's temporaries are owner-only; what is renamed into place is not (outputs are shared)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    with atomic_path(tmp_path / "video.mp4") as tmp:
        tmp.write_bytes(b"x")
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"plain.txt": modes["plain.txt"], "atomic.txt": modes["plain.txt"], "video.mp4": modes["plain.txt"]}

