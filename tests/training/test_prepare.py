"""`emo dataset prepare` end to end on small synthetic videos of a known head motion."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from factories import EMO, emo_env, run_to_pause
from synthetic import (
    FPS,
    RESOLUTION,
    SAMPLE_RATE,
    SETTINGS,
    portrait,
    prepared_dataset,
    rotating_video,
    speech_like,
    write_video,
)

from emo_cli.training import PrepareSettings, load_index, prepare_dataset

ROOT = Path(__file__).resolve().parents[2]
SPEED_TOLERANCE = 0.15  # degrees/frame on the median (measured: within 0.05 of 1 and 3)
TURNS = (8, 9, 10, 11, 12, 28, 29, 30, 31, 32)  # the triangle wave reverses at 10 and 30: +-2 frames see it


@pytest.fixture
def prepared(tmp_path_factory):
    return prepared_dataset(tmp_path_factory)


def _speeds(root: Path, clip: dict) -> np.ndarray:
    return np.load(root / clip["files"]["speed"]["path"])


def test_head_speed_of_a_rolling_portrait_is_recovered(prepared):
    folder, videos, summary, _ = prepared
    index = load_index(folder / "data")
    by_source = {v["source"]: v for v in index["videos"]}
    for speed, video in videos.items():
        (clip_id,) = by_source[video.name]["clips"]
        clip = next(c for c in index["clips"] if c["id"] == clip_id)
        speeds = _speeds(folder / "data", clip)
        assert clip["frames"] == 40 and speeds.shape == (40,)
        assert np.all(speeds[[10, 30]] < 0.6 * speed + 0.1)  # a reversal: the head stops for an instant
        steady = np.delete(speeds, TURNS)
        assert abs(float(np.median(steady)) - speed) < SPEED_TOLERANCE, (speed, np.round(speeds, 2))
        assert float(np.quantile(np.abs(steady - speed), 0.9)) < 0.6, (speed, np.round(speeds, 2))
    assert index["speed"]["unit"] == "degrees/frame"


def test_clip_files_hold_frames_audio_boxes_and_mesh_in_crop_pixels(prepared):
    folder, videos, _, _ = prepared
    root = folder / "data"
    index = load_index(root)
    clip = next(c for c in index["clips"] if c["video"] == index["videos"][0]["id"])
    with av.open(str(root / clip["files"]["frames"]["path"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == clip["frames"] and frames[0].shape == (RESOLUTION, RESOLUTION, 3)
    audio = np.load(root / clip["files"]["audio"]["path"])
    assert audio.dtype == np.float32 and audio.shape == (clip["frames"] * SAMPLE_RATE // FPS,)
    # The stored audio is the source's (AAC-coded) speech, aligned to the clip's first frame.
    source = next(v for v in index["videos"] if v["id"] == clip["video"])["source"]
    speed = int(source.removeprefix("roll").removesuffix(".mp4"))
    expected = speech_like(40 / FPS, seed=speed)[clip["start_frame"] * 640 :][: audio.size]
    assert np.corrcoef(audio[2000:-2000], expected[2000:-2000])[0, 1] > 0.95
    boxes = np.load(root / clip["files"]["boxes"]["path"])
    points = np.load(root / clip["files"]["landmarks"]["path"])
    assert boxes.shape == (clip["frames"], 4) and points.shape == (clip["frames"], 478, 3)
    # The mesh lies inside its detector box (in the same crop pixels), frame after frame.
    nose = points[:, 1, :2]
    assert np.all((boxes[:, 0] < nose[:, 0]) & (nose[:, 0] < boxes[:, 2]))
    assert np.all((boxes[:, 1] < nose[:, 1]) & (nose[:, 1] < boxes[:, 3]))
    # The files are those the index hashed.
    from emo_cli.fsutil import sha256_file

    assert all(sha256_file(root / f["path"]) == f["sha256"] for f in clip["files"].values())


def test_split_is_identity_disjoint_and_follows_the_identity_map(prepared):
    folder, _, summary, _ = prepared
    index = load_index(folder / "data")
    split_of = {}
    for clip in index["clips"]:
        assert split_of.setdefault(clip["identity"], clip["split"]) == clip["split"]
    assert set(split_of) == {"anna", "bob"}
    assert set(index["splits"]["train"]["identities"]).isdisjoint(index["splits"]["val"]["identities"])
    assert sorted(split_of.values()) == ["train", "val"]  # val_fraction 0.5 of two people: one each
    # Speed buckets come from the training clips only.
    train_frames = sum(c["frames"] for c in index["clips"] if c["split"] == "train")
    assert index["speed"]["frames"] == train_frames and index["speed"]["fitted_on"] == "train"
    assert summary.exit_code == 0


def test_split_keeps_an_identity_where_it_was_when_others_are_added():
    from emo_cli.training.index import split_identities

    people = [f"person{i}" for i in range(200)]
    split = split_identities(people, 0.1, seed=0)
    assert 8 <= sum(s == "val" for s in split.values()) <= 35
    more = split_identities([*people, *(f"new{i}" for i in range(50))], 0.1, seed=0)
    assert all(more[p] == split[p] for p in people)
    assert split_identities(["a", "b"], 0.1, seed=0).keys() == {"a", "b"}
    assert sorted(split_identities(["a", "b"], 0.1, seed=0).values()) == ["train", "val"]


def test_resume_skips_finished_videos_and_rewrites_nothing(prepared, tmp_path):
    folder, videos, first, _ = prepared
    data = tmp_path / "data"
    shutil.copytree(folder / "data", data)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (data / "videos").rglob("*")}
    events: list[dict] = []
    identities = {"roll0.mp4": "anna", "roll1.mp4": "anna", "roll3.mp4": "bob"}
    again = prepare_dataset(list(videos.values()), data, SETTINGS, identities, events=events.append)
    assert [e["event"] for e in events if e["event"].startswith("video_")] == ["video_skipped"] * 3
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in before} == before
    assert again.fingerprint == first.fingerprint


def test_fingerprint_changes_when_a_video_changes(prepared, tmp_path):
    folder, videos, first, _ = prepared
    identities = {"roll0.mp4": "anna", "roll1.mp4": "anna", "roll3.mp4": "bob"}
    changed = {speed: shutil.copy(path, tmp_path / path.name) for speed, path in videos.items()}
    rotating_video(Path(changed[3]), 3, seed=7)  # same motion, other audio
    data = tmp_path / "data"
    shutil.copytree(folder / "data", data)
    events: list[dict] = []
    second = prepare_dataset(list(changed.values()), data, SETTINGS, identities, events=events.append)
    assert [e["event"] for e in events if e["event"] in ("video_skipped", "video_done")] == \
        ["video_skipped", "video_skipped", "video_done"]  # fmt: skip
    assert second.fingerprint != first.fingerprint
    index = load_index(data)
    assert len(index["clips"]) == 3  # the index holds the videos of this run, not the replaced one
    replaced = next(v["id"] for v in load_index(folder / "data")["videos"] if v["source"] == "roll3.mp4")
    assert second.stale == [replaced]
    pruned = prepare_dataset(list(changed.values()), data, SETTINGS, identities, prune=True)
    assert pruned.pruned == [replaced] and not (data / "videos" / replaced).exists()
    assert pruned.fingerprint == second.fingerprint


def test_one_process_prepares_a_folder_at_a_time(prepared, tmp_path):
    from emo_cli.errors import UsageError
    from emo_cli.execution.lease import JobLease

    _, videos, _, _ = prepared
    with JobLease.acquire(tmp_path / "data", heartbeat_s=0):
        with pytest.raises(UsageError, match=rf"{tmp_path / 'data'} is being prepared by another process \(pid"):
            prepare_dataset([videos[0]], tmp_path / "data", SETTINGS)


def _prepare_script(videos: list[Path], out: Path) -> str:
    args = [*map(str, videos), "--out", str(out), "--resolution", str(RESOLUTION)]
    return f"""
import json, sys
from typer.testing import CliRunner
from emo_cli.cli import app
result = CliRunner().invoke(app, ["dataset", "prepare", *{args!r}])
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps({{"code": result.exit_code, "output": result.output, "heavy": heavy}}))
"""


def test_bad_silent_and_faceless_videos_are_reported_and_skipped_without_torch(tmp_path):
    """One good video among damaged, silent and face-less ones: it is prepared, each other is named."""
    good = rotating_video(tmp_path / "good.mp4", 1.0, frames=30)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    image = portrait()
    silent = write_video(tmp_path / "silent.mp4", 30, lambda i: image, np.zeros(30 * 640, np.float32))
    mute = write_video(tmp_path / "mute.mp4", 30, lambda i: image, None)
    sky = np.broadcast_to(np.linspace(60, 200, 320, dtype=np.uint8)[:, None, None], (320, 320, 3)).copy()
    faceless = write_video(tmp_path / "faceless.mp4", 30, lambda i: sky, speech_like(30 / FPS))
    out = tmp_path / "data"
    videos = [garbage, truncated, silent, good, mute, faceless]
    run = subprocess.run([sys.executable, "-c", _prepare_script(videos, out)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "COLUMNS": "400"})  # fmt: skip
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["code"] == 1, report["output"]
    output = report["output"]
    assert "video " + str(garbage) + " cannot be read (damaged, truncated or not a video)" in output
    assert "video " + str(truncated) + " cannot be read" in output
    assert f"video {silent}: its audio is silent" in output
    assert f"video {mute} has no audio stream" in output
    assert f"video {faceless}: no usable face track (30 frames: 30 without a face" in output
    assert "5 video(s) skipped for errors" in output
    index = load_index(out)
    assert [v["source"] for v in index["videos"]] == ["good.mp4"]
    assert len(index["failed"]) == 5
    assert sorted(p.name for p in (out / "videos").iterdir()) == [index["videos"][0]["id"]]


def test_a_killed_prepare_resumes_to_the_same_dataset(prepared, tmp_path):
    """SIGKILL after the first video is recorded; the rerun skips it and ends where an unkilled run ends."""
    folder, videos, first, _ = prepared
    order = [videos[1], videos[3]]
    out = tmp_path / "data"
    script = f"""
from emo_cli.training import PrepareSettings, prepare_dataset
prepare_dataset({[str(v) for v in order]!r}, {str(out)!r}, PrepareSettings(resolution={RESOLUTION}))
"""
    proc = run_to_pause([sys.executable, "-c", script], "prepare:video", tmp_path / "pause.fifo", emo_env(),
                        deadline_s=120, cwd=ROOT)  # fmt: skip
    assert len(list(out.glob("videos/*/record.json"))) == 1  # stopped after the first video
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    events: list[dict] = []
    resumed = prepare_dataset(order, out, PrepareSettings(resolution=RESOLUTION), events=events.append)
    assert [e["event"] for e in events if e["event"] in ("video_skipped", "video_done")] == \
        ["video_skipped", "video_done"]  # fmt: skip
    assert not list(out.rglob("*.tmp*"))
    whole = prepare_dataset(order, tmp_path / "whole", PrepareSettings(resolution=RESOLUTION))
    assert resumed.fingerprint == whole.fingerprint


def test_cli_json_events_and_usage_errors(prepared, tmp_path, monkeypatch, capsys):
    from typer.testing import CliRunner

    from emo_cli.cli import app, main

    folder, videos, first, _ = prepared
    shutil.copytree(folder / "data", tmp_path / "data")
    identities = tmp_path / "people.yaml"
    identities.write_text("roll0.mp4: anna\nroll1.mp4: anna\nroll3.mp4: bob\n")
    args = ["dataset", "prepare", *map(str, videos.values()), "--out", str(tmp_path / "data"), "--resolution",
            str(RESOLUTION), "--val-fraction", "0.5", "--identity", str(identities), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert [e["event"] for e in events] == ["prepare_started", *["video_skipped"] * 3, "index_written", "prepare_done"]
    assert events[-2]["fingerprint"] == first.fingerprint
    assert events[-1] == {"event": "prepare_done", "prepared": 0, "skipped": 3, "failed": 0, "stale": [],
                          "pruned": [], "index": str(tmp_path / "data" / "index.json"), "exit_code": 0}  # fmt: skip
    # Through the real entry point: an EmoError is a message and an exit code, all problems at once.
    monkeypatch.setattr(sys, "argv", ["emo", "dataset", "prepare", str(videos[0]), "--out", str(tmp_path / "x"),
                                      "--resolution", "100", "--val-fraction", "1"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--resolution 100: use a multiple of 8 from 64 to 2048; --val-fraction 1.0: use a fraction" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()


def test_identity_map_names_videos_by_path_given_file_name_or_path_beside_the_map(tmp_path, monkeypatch):
    from emo_cli.errors import UsageError
    from emo_cli.training.prepare import _identity_of, load_identities

    (tmp_path / "maps").mkdir()
    people = tmp_path / "maps" / "people.yaml"
    people.write_text("../footage/day1/take.mp4: anna\nben.mov: ben\n")
    mapping = load_identities(people)
    monkeypatch.chdir(tmp_path)
    assert _identity_of(Path("footage/day1/take.mp4"), mapping) == ("anna", True)  # beside the map
    assert _identity_of(Path("footage/day2/take.mp4"), mapping) == (None, False)  # same name, other file
    assert _identity_of(Path("elsewhere/ben.mov"), mapping) == ("ben", True)  # by file name
    people.write_text("- a list\n")
    with pytest.raises(UsageError, match=r"must map each video file to an identity"):
        load_identities(people)


def test_workers_prepare_the_same_dataset_byte_for_byte(prepared, tmp_path):
    folder, videos, first, _ = prepared
    identities = {"roll0.mp4": "anna", "roll1.mp4": "anna", "roll3.mp4": "bob"}
    twin = tmp_path / "copy-of-roll1.mp4"  # the same content twice must not be prepared twice at once
    shutil.copy(videos[1], twin)
    events: list[dict] = []
    summary = prepare_dataset([*videos.values(), twin], tmp_path / "data", SETTINGS, identities,
                              events=events.append, workers=2)  # fmt: skip
    assert [v.status for v in summary.videos] == ["prepared", "prepared", "prepared", "skipped"]
    done = [e for e in events if e["event"] == "video_done"]
    assert sorted(e["video"] for e in done) == sorted(map(str, videos.values()))
    index, reference = load_index(tmp_path / "data"), load_index(folder / "data")
    assert {c["id"]: c["files"] for c in index["clips"]} == {c["id"]: c["files"] for c in reference["clips"]}
    assert index["speed"] == reference["speed"]
    assert summary.videos[3].id == summary.videos[1].id and len(index["videos"]) == 3  # one video, twice


def test_ctrl_c_exits_130_keeps_finished_videos_and_leaves_nothing_half_made(prepared, tmp_path):
    from emo_cli.execution.lease import read_lease

    _, videos, _, _ = prepared
    out = tmp_path / "data"
    command = [sys.executable, "-m", "emo_cli", "dataset", "prepare", str(videos[1]), str(videos[3]), "--out",
               str(out), "--resolution", str(RESOLUTION)]  # fmt: skip
    # Stopped with the second video half made: a clip written, its record not yet.
    point = f"prepare:clip@{videos[3].name}"
    proc = run_to_pause(command, point, tmp_path / "pause.fifo", emo_env(), deadline_s=120, cwd=ROOT,
                        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert len(list(out.glob("videos/*/record.json"))) == 1 and len(list(out.glob("videos/*"))) == 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: prepared videos are kept; run the same command again to resume." in err
    assert "Traceback" not in err
    (finished,) = out.glob("videos/*/record.json")
    assert [p.name for p in (out / "videos").iterdir()] == [finished.parent.name]  # the second one is gone
    assert read_lease(out) is None  # the folder is free for the next run


def test_folders_stand_for_their_videos_but_not_for_the_dataset_inside_them(tmp_path):
    from emo_cli.errors import UsageError
    from emo_cli.training.prepare import collect_videos

    (tmp_path / "day1").mkdir()
    (tmp_path / "data" / "videos" / "abc").mkdir(parents=True)
    for name in ("day1/b.MOV", "day1/a.mp4", "day1/notes.txt", "c.mkv", "data/videos/abc/abc-0000.frames.mp4"):
        (tmp_path / name).write_bytes(b"x")
    found = collect_videos([tmp_path, tmp_path / "missing.mp4"], exclude=tmp_path / "data")
    assert found == [tmp_path / "c.mkv", tmp_path / "day1" / "a.mp4", tmp_path / "day1" / "b.MOV",
                     tmp_path / "missing.mp4"]  # fmt: skip
    with pytest.raises(UsageError, match="holds no video files"):
        collect_videos([tmp_path / "data" / "videos" / "abc"], exclude=tmp_path / "data")


def test_sigterm_between_videos_exits_143_keeps_the_prepared_one_and_resumes(prepared, tmp_path):
    """A scheduler's SIGTERM stops the run like Ctrl-C: exit 128 + 15, the finished video kept."""
    folder, videos, first, _ = prepared
    out = tmp_path / "data"
    argv = [*EMO, "dataset", "prepare", str(videos[1]), str(videos[3]), "--out", str(out), "--resolution",
            str(RESOLUTION), "--val-fraction", "0.5", "--json"]  # fmt: skip
    proc = run_to_pause(argv, "prepare:video", tmp_path / "pause.fifo", emo_env(), deadline_s=120,
                        stdout=subprocess.PIPE)  # fmt: skip
    proc.send_signal(signal.SIGTERM)  # the run is blocked at the point: after the first video, before the next
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    events = [json.loads(line)["event"] for line in stdout.decode().splitlines()]
    assert [e for e in events if e != "video_progress"] == ["prepare_started", "video_started", "video_done",
                                                            "interrupted"]  # fmt: skip
    assert "interrupted: prepared videos are kept" in stderr.decode() and b"Traceback" not in stderr
    assert len(list(out.glob("videos/*/record.json"))) == 1 and not list(out.rglob("*.tmp*"))

    again = subprocess.run(argv, env=emo_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    events = [json.loads(line)["event"] for line in again.stdout.splitlines()]
    assert [e for e in events if e in ("video_skipped", "video_done")] == ["video_skipped", "video_done"]


def test_a_full_disk_stops_the_run_naming_the_file_and_keeps_what_was_prepared(prepared, tmp_path, monkeypatch):
    """ENOSPC while writing a video's clips is the dataset folder's fault, not the video's: the run
    stops with a message that names the file and says what to do, instead of failing every video."""
    import errno

    from emo_cli.errors import StorageError
    from emo_cli.training import prepare as prepare_module

    folder, videos, first, _ = prepared
    out = tmp_path / "data"
    real = prepare_module._write_clips
    calls = []

    def full_after_one(path, root, vid, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            target = root / "videos" / vid / "clip-000.mp4"
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real(path, root, vid, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "_write_clips", full_after_one)
    order = [videos[1], videos[3], videos[0]]
    events: list[dict] = []
    with pytest.raises(StorageError) as raised:
        prepare_dataset(order, out, SETTINGS, events=events.append)
    message = str(raised.value)
    assert message.startswith(str(out / "videos")) and "No space left on device; the disk is full" in message
    assert [e["event"] for e in events if e["event"] in ("video_done", "video_failed")] == ["video_done"]
    assert len(calls) == 2  # the third video was not tried
    assert len(list(out.glob("videos/*/record.json"))) == 1 and not list(out.rglob("*.tmp*"))

    monkeypatch.setattr(prepare_module, "_write_clips", real)  # room again: the same call resumes
    events.clear()
    prepare_dataset(order, out, SETTINGS, events=events.append)
    assert [e["event"] for e in events if e["event"] in ("video_skipped", "video_done", "video_failed")] == \
        ["video_skipped", "video_done", "video_done"]  # fmt: skip


def test_an_out_folder_that_cannot_be_created_is_named_without_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    video = rotating_video(tmp_path / "v.mp4", 1.0, frames=10)
    run = subprocess.run([*EMO, "dataset", "prepare", str(video), "--out", str(blocker / "data")], env=emo_env(),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert f"--out {blocker / 'data'} cannot be created or written: {blocker}" in run.stderr.replace("\n", "")
    assert "Traceback" not in run.stderr
