"""The dataset on disk: its folder layout, the index (JSON), the split and the fingerprint.

    DATA/index.json                          the index (this module writes and reads it)
    DATA/videos/<video id>/record.json       one prepared video: its clips and their files
    DATA/videos/<video id>/<clip>.frames.mp4 square crops at the training resolution, H.264
    DATA/videos/<video id>/<clip>.audio.npy  float32 mono audio at the sample rate, aligned
    DATA/videos/<video id>/<clip>.boxes.npy  float32 (T, 4) face boxes x0, y0, x1, y1 in crop pixels
    DATA/videos/<video id>/<clip>.landmarks.npy  float32 (T, 478, 3) face-mesh points in crop pixels
    DATA/videos/<video id>/<clip>.speed.npy  float32 (T,) head rotation speed, degrees per frame

A video id is the first 16 hex digits of sha256 over a canonical JSON document of the source's
sha256, the per-video settings and `VIDEO_FORMAT`: the same footage prepared the same way has
the same id, so a finished video is found again and skipped. The record is written last, so a
video folder without one is unfinished and is prepared again from scratch.

The dataset fingerprint is sha256 over a canonical JSON document of `INDEX_FORMAT`, the settings,
and every clip's id, identity, split and file hashes: it changes when any frame, sample,
landmark, speed or assignment changes, and not when the source files move or are renamed.
Training records it, so weights name the data they learned from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emo_cli.errors import InputError
from emo_cli.fsutil import atomic_write_text
from emo_cli.planning.fingerprint import canonical_json

VIDEO_FORMAT = 1
INDEX_FORMAT = 1
INDEX_NAME = "index.json"
RECORD_NAME = "record.json"
CLIP_FILES = ("frames", "audio", "boxes", "landmarks", "speed")
CLIP_SUFFIXES = {"frames": ".frames.mp4", "audio": ".audio.npy", "boxes": ".boxes.npy",
                 "landmarks": ".landmarks.npy", "speed": ".speed.npy"}  # fmt: skip


def video_id(source_sha256: str, settings: Mapping[str, Any]) -> str:
    doc = {"format": VIDEO_FORMAT, "source_sha256": source_sha256, "settings": dict(settings)}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()[:16]


def video_dir(root: Path, vid: str) -> Path:
    return root / "videos" / vid


def clip_name(vid: str, number: int) -> str:
    return f"{vid}-{number:04d}"


def clip_file(root: Path, vid: str, clip: str, kind: str) -> Path:
    return video_dir(root, vid) / f"{clip}{CLIP_SUFFIXES[kind]}"


def relative_clip_file(vid: str, clip: str, kind: str) -> str:
    """A clip file's path relative to the dataset root, as the index spells it (POSIX)."""
    return f"videos/{vid}/{clip}{CLIP_SUFFIXES[kind]}"


def read_record(root: Path, vid: str) -> dict | None:
    """A finished video's record, or None when the video is unfinished or its record is unreadable."""
    path = video_dir(root, vid) / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != VIDEO_FORMAT or record.get("id") != vid:
        return None
    return record


def write_record(root: Path, record: Mapping[str, Any]) -> None:
    atomic_write_text(video_dir(root, record["id"]) / RECORD_NAME, json.dumps(record, indent=1) + "\n")


def split_identities(identities: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """identity -> "train" or "val", so that no identity is in both.

    Each identity draws a number in [0, 1) from sha256(seed, identity) and goes to val when it
    is below `val_fraction`: an identity keeps its split when others are added. With two or more
    identities and a non-zero fraction, at least one is val and at least one is train.
    """
    draws = {name: _draw(seed, name) for name in sorted(set(identities))}
    split = {name: "val" if draw < val_fraction else "train" for name, draw in draws.items()}
    if len(split) >= 2 and val_fraction > 0:
        if "val" not in split.values():
            split[min(draws, key=draws.__getitem__)] = "val"
        if "train" not in split.values():
            split[max(draws, key=draws.__getitem__)] = "train"
    return split


def _draw(seed: int, identity: str) -> float:
    digest = hashlib.sha256(canonical_json({"seed": seed, "identity": identity}).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def dataset_fingerprint(settings: Mapping[str, Any], clips: list[Mapping[str, Any]]) -> str:
    doc = {
        "format": INDEX_FORMAT,
        "settings": dict(settings),
        "clips": [{"id": c["id"], "identity": c["identity"], "split": c["split"],
                   "sha256": {kind: c["files"][kind]["sha256"] for kind in CLIP_FILES}} for c in clips],
    }  # fmt: skip
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def write_index(root: Path, index: Mapping[str, Any]) -> Path:
    path = root / INDEX_NAME
    atomic_write_text(path, json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return path


def load_index(root: Path | str) -> dict:
    """The index of a prepared dataset folder (or of the index file itself).

    Raises:
        InputError: missing, unreadable, or written by another index format.
    """
    root = Path(root)
    path = root if root.suffix == ".json" else root / INDEX_NAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: prepare the dataset with `emo dataset prepare`") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as a dataset index: {exc}") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        found = index.get("format") if isinstance(index, dict) else None
        raise InputError(f"{path} format: {found!r} is not a dataset index of format {INDEX_FORMAT}; "
                         "prepare the dataset again with this version of emo-cli")  # fmt: skip
    return index


def dataset_summary(root: Path | str) -> dict:
    """What `emo dataset info` shows: fingerprint, settings, per split counts and hours, speeds, drops."""
    index = load_index(root)
    fps = index["settings"]["fps"]
    splits = {}
    for name, split in index["splits"].items():
        splits[name] = {"identities": len(split["identities"]), "clips": split["clips"], "frames": split["frames"],
                        "hours": round(split["frames"] / fps / 3600, 4)}  # fmt: skip
    dropped: dict[str, int] = {}
    for video in index["videos"]:
        for reason, count in video["dropped"].items():
            if reason != "frames":
                dropped[reason] = dropped.get(reason, 0) + count
    percentiles = index["speed"]["percentiles"]
    return {
        "fingerprint": index["fingerprint"],
        "settings": index["settings"],
        "videos": len(index["videos"]),
        "splits": splits,
        "source_frames": sum(v["frames"] for v in index["videos"]),
        "dropped": dropped,
        "speed": {"unit": index["speed"]["unit"], "fitted_on": index["speed"]["fitted_on"],
                  "p10": percentiles[10], "p50": percentiles[50], "p90": percentiles[90]},  # fmt: skip
        "failed": index["failed"],
    }
