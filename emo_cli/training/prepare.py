"""`emo dataset prepare`: source videos -> a training dataset (see `index` for the layout).

Per video, as a readable sequence of named steps:

1. identify: hash the source; a finished video (its record exists and every file it lists
   matches its hash) is skipped;
2. probe and read the audio (16 kHz mono, aligned to the first video frame); a video without
   audio, or with silence only, is rejected before any frame is decoded;
3. track (pass 1): decode at 25 fps, detect faces, find cuts -> clips and their crops;
4. write (pass 2): decode again, crop each clip, fit the 3-D face mesh, encode the crops and
   save boxes, mesh points, head speeds and the clip's audio, each file atomically;
5. record: the video's record, written last.

Two decoding passes keep memory nearly flat for any length of footage: pass 1 keeps a few
numbers per frame, pass 2 streams frames into the clip encoders; only the audio is held whole
(16 kHz float32: 230 MB an hour, twice that while it is decoded). Then the index: identity-disjoint split,
speed table fitted to the training clips, fingerprint. Unreadable, silent or face-less videos
are reported and skipped; the others go on. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emo_cli.errors import EmoError, InputError, StorageError, UsageError, describe_os_error
from emo_cli.execution.checkpoints import pause_point
from emo_cli.fsutil import AtomicFile, atomic_path, sha256_file
from emo_cli.training import index as layout
from emo_cli.training.headpose import fit_speed_table, head_speeds
from emo_cli.training.tracking import MAX_UPSCALE, ClipPlan, FaceTracker, FrameFaces, TrackStats, plan_clips
from emo_cli.training.video import probe_video, read_audio, read_frames, read_frames_marked

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".mts", ".ts")
SILENCE_PEAK = 1e-4  # -80 dBFS: below this the whole track is digital silence
Events = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class PrepareSettings:
    """How videos become clips (per video: part of each video's id) and how the index is built."""

    resolution: int = 512
    fps: int = 25
    sample_rate: int = 16000
    min_clip_seconds: float = 1.0
    max_clip_seconds: float = 20.0
    crf: int = 14  # H.264 quality of the stored crops (lower is better; 14 is visually lossless)
    # Index-level: change these and the videos are not prepared again, only the index.
    val_fraction: float = 0.1
    split_seed: int = 0
    speed_buckets: int = 9

    def __post_init__(self) -> None:
        problems = []
        if not 64 <= self.resolution <= 2048 or self.resolution % 8:
            problems.append(f"--resolution {self.resolution}: use a multiple of 8 from 64 to 2048")
        if not 0 < self.min_clip_seconds <= self.max_clip_seconds:
            problems.append(f"--min-clip-seconds {self.min_clip_seconds} must be above 0 and at most "
                            f"--max-clip-seconds {self.max_clip_seconds}")  # fmt: skip
        if not 0 <= self.val_fraction < 1:
            problems.append(f"--val-fraction {self.val_fraction}: use a fraction from 0 to below 1")
        if self.speed_buckets < 1:
            problems.append(f"--speed-buckets {self.speed_buckets}: use 1 or more")
        if not 0 <= self.crf <= 51:
            problems.append(f"--crf {self.crf}: use 0 (lossless) to 51")
        if self.fps <= 0 or self.sample_rate <= 0 or self.sample_rate % self.fps:
            problems.append(f"sample rate {self.sample_rate} must be a whole number of samples per frame at "
                            f"{self.fps} fps")  # fmt: skip
        if problems:
            raise UsageError("; ".join(problems))

    @property
    def min_frames(self) -> int:
        return max(2, round(self.min_clip_seconds * self.fps))

    @property
    def max_frames(self) -> int:
        return max(self.min_frames, round(self.max_clip_seconds * self.fps))

    def per_video(self) -> dict[str, Any]:
        """The settings a prepared video depends on (its id hashes them)."""
        return {"resolution": self.resolution, "fps": self.fps, "sample_rate": self.sample_rate,
                "min_clip_frames": self.min_frames, "max_clip_frames": self.max_frames, "crf": self.crf,
                "max_upscale": MAX_UPSCALE}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**self.per_video(), "val_fraction": self.val_fraction, "split_seed": self.split_seed,
                "speed_buckets": self.speed_buckets}  # fmt: skip


@dataclass
class VideoResult:
    """What happened to one source video."""

    source: str
    status: str  # prepared, skipped (already prepared), failed
    identity: str = ""
    id: str | None = None
    clips: int = 0
    frames: int = 0  # frames kept in clips
    seconds: float = 0.0
    error: str | None = None


@dataclass
class PrepareSummary:
    index: Path | None
    fingerprint: str | None
    videos: list[VideoResult] = field(default_factory=list)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)  # videos an identity map did not name
    stale: list[str] = field(default_factory=list)  # prepared video folders not in this index
    pruned: list[str] = field(default_factory=list)  # the same, deleted (prune=True)

    @property
    def failed(self) -> list[VideoResult]:
        return [v for v in self.videos if v.status == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.index is None else 0


def collect_videos(paths: Iterable[Path | str], exclude: Path | None = None) -> list[Path]:
    """The video files named, a folder standing for the video files under it (sorted).

    Files under `exclude` (the dataset folder itself, when it sits among the footage) are left out.
    """
    skip = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                            and (skip is None or not p.resolve().is_relative_to(skip)))  # fmt: skip
            if not inside:
                raise UsageError(f"{path} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            found.extend(inside)
        else:
            found.append(path)  # missing or unreadable files are reported per video, the others go on
    return found


def load_identities(path: Path) -> dict[str, str]:
    """An identity map (YAML or JSON): video file -> the person filmed.

    A key names a video as given on the command line, by its file name, or by its path relative
    to the map's own folder.
    """
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--identity {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--identity {path} is not YAML or JSON: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str | int) for k, v in doc.items()):
        raise UsageError(f"--identity {path} must map each video file to an identity, e.g. `take1.mp4: anna`")
    mapping = {k: str(v) for k, v in doc.items()}
    for key, value in list(mapping.items()):
        mapping.setdefault(str((path.parent / key).resolve()), value)
    return mapping


def prepare_dataset(
    videos: Sequence[Path | str],
    out: Path | str,
    settings: PrepareSettings | None = None,
    identities: Mapping[str, str] | None = None,
    events: Events | None = None,
    prune: bool = False,
    workers: int = 1,
) -> PrepareSummary:
    """Prepare `videos` (files or folders of them) into the dataset folder `out` and write its index.

    Finished videos are skipped; a failed video is reported (event and summary) and the others go
    on. The index covers the videos of this call that yielded clips. Prepared videos in `out`
    that are not among them (older versions of changed files, videos left out this time) are
    listed in the summary, and deleted with `prune`. One process prepares a folder at a time;
    with `workers` > 1 it prepares that many videos at once in worker processes (the dataset is
    the same, byte for byte, for any number of workers).
    """
    from emo_cli.execution.lease import JobLease, read_lease

    settings = settings or PrepareSettings()
    emit = events or (lambda event: None)
    root = Path(out)
    paths = collect_videos(videos, exclude=root)
    if not paths:
        raise UsageError("name at least one video file or folder")
    if workers < 1:
        raise UsageError(f"--workers {workers}: use 1 or more")
    try:
        lease = JobLease.acquire(root)
    except OSError as exc:  # --out cannot be created or written (read-only, a file in the way)
        raise StorageError(f"--out {root} cannot be created or written: {describe_os_error(exc)}") from exc
    if lease is None:
        holder = read_lease(root)
        who = f" (pid {holder.pid} on {holder.host})" if holder else ""
        raise UsageError(f"{root} is being prepared by another process{who}; wait for it to finish or "
                         "use another --out")  # fmt: skip
    with lease:
        try:
            return _prepare_all(paths, root, settings, identities, emit, prune, workers)
        except OSError as exc:  # writing the index or a record: the dataset folder's file system
            raise StorageError.from_os_error(exc) from exc


def _prepare_all(paths: list[Path], root: Path, settings: PrepareSettings, identities: Mapping[str, str] | None,
                 emit: Events, prune: bool, workers: int) -> PrepareSummary:  # fmt: skip
    emit({"event": "prepare_started", "videos": len(paths), "out": str(root), "workers": workers})
    if workers > 1 and len(paths) > 1:
        results = _prepare_parallel(paths, root, settings, emit, workers)
    else:
        results = []
        for path in paths:
            results.append(_prepare_one(path, root, settings, emit))
            pause_point("prepare:video")  # tests stop the run here, between two videos

    records: dict[str, tuple[dict, str]] = {}  # video id -> (record, identity)
    unmapped = []
    for path, result in zip(paths, results, strict=True):
        identity, named = _identity_of(path, identities)
        if identities is not None and not named:
            unmapped.append(str(path))
        if result.status != "failed":
            record = layout.read_record(root, result.id)
            records.setdefault(result.id, (record, identity or f"video:{record['source_sha256'][:16]}"))

    summary = PrepareSummary(index=None, fingerprint=None, videos=results, unmapped=unmapped)
    others = sorted(p for p in (root / "videos").glob("*") if p.is_dir() and p.name not in records)
    if prune and records:  # never prune on a run that prepared nothing (a mistyped path, say)
        for folder in others:
            shutil.rmtree(folder)
        summary.pruned = [p.name for p in others]
    else:
        summary.stale = [p.name for p in others]
    if not records:
        emit({"event": "index_skipped", "reason": "no video yielded a training clip"})
        _emit_done(emit, summary)
        return summary
    index = build_index(root, records, results, settings)
    for result in results:
        if result.id in records:
            result.identity = records[result.id][1]
    summary.index = layout.write_index(root, index)
    summary.fingerprint = index["fingerprint"]
    summary.splits = {name: {k: v for k, v in split.items() if k != "identities"} for name, split in
                      index["splits"].items()}  # fmt: skip
    emit({"event": "index_written", "index": str(summary.index), "fingerprint": summary.fingerprint,
          "splits": summary.splits})  # fmt: skip
    _emit_done(emit, summary)
    return summary


_worker_events: Any = None  # in a worker process: the queue its events go back through


def _start_worker(queue: Any) -> None:
    global _worker_events
    _worker_events = queue


def _prepare_in_worker(path: Path, root: Path, settings: PrepareSettings) -> VideoResult:
    return _prepare_one(path, root, settings, _worker_events.put)


def _prepare_parallel(paths: list[Path], root: Path, settings: PrepareSettings, emit: Events,
                      workers: int) -> list[VideoResult]:  # fmt: skip
    """`_prepare_one` for every path, `workers` at a time in spawned processes; events relayed here.

    Two workers must never prepare the same content (the same video folder) at once, so a file
    as large as one already handed out waits for the parallel phase to end (a copy of a
    prepared video is then skipped at once; a different video of equal size is prepared then).
    """
    import multiprocessing as mp
    import queue as queues
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    sizes: set[int] = set()
    parallel, after = [], []
    for i, path in enumerate(paths):
        try:
            size = path.stat().st_size
        except OSError:
            size = -1 - i  # reported by _prepare_one
        (after if size in sizes else parallel).append(i)
        sizes.add(size)

    def relay(queue: Any) -> None:
        while True:
            try:
                emit(queue.get_nowait())
            except queues.Empty:
                return

    results: list[VideoResult | None] = [None] * len(paths)
    context = mp.get_context("spawn")  # mediapipe's graphs and threads do not survive a fork
    events = context.Queue()
    with ProcessPoolExecutor(max_workers=min(workers, len(parallel)), mp_context=context,
                             initializer=_start_worker, initargs=(events,)) as pool:  # fmt: skip
        futures = {pool.submit(_prepare_in_worker, paths[i], root, settings): i for i in parallel}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                relay(events)
                for future in done:
                    results[futures[future]] = future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    relay(events)  # the workers have exited, so their last events are in the queue
    for i in after:
        results[i] = _prepare_one(paths[i], root, settings, emit)
    return results  # type: ignore[return-value]


def _emit_done(emit: Events, summary: PrepareSummary) -> None:
    counts = {status: sum(v.status == status for v in summary.videos) for status in ("prepared", "skipped", "failed")}
    emit({"event": "prepare_done", **counts, "stale": summary.stale, "pruned": summary.pruned,
          "index": str(summary.index) if summary.index else None, "exit_code": summary.exit_code})  # fmt: skip


def _identity_of(path: Path, identities: Mapping[str, str] | None) -> tuple[str | None, bool]:
    if identities:
        for key in (str(path), path.as_posix(), str(path.resolve()), path.name):
            if key in identities:
                return identities[key], True
    return None, False  # the video is its own identity (named by its content hash)


def _prepare_one(path: Path, root: Path, settings: PrepareSettings, emit: Events) -> VideoResult:
    started = time.monotonic()
    name = str(path)
    try:
        if not path.is_file():
            raise InputError(f"video {path} does not exist" if not path.exists() else f"video {path} is not a file")
        source_sha256 = sha256_file(path)
        vid = layout.video_id(source_sha256, settings.per_video())
        record = layout.read_record(root, vid)
        if record is not None and _record_intact(root, record):
            emit({"event": "video_skipped", "video": name, "id": vid})
            return VideoResult(name, "skipped", id=vid, clips=len(record["clips"]),
                               frames=sum(c["frames"] for c in record["clips"]))  # fmt: skip
        record = prepare_video(path, root, vid, source_sha256, settings, emit)
    except StorageError:
        raise
    except EmoError as exc:
        emit({"event": "video_failed", "video": name, "error": str(exc)})
        return VideoResult(name, "failed", error=str(exc), seconds=time.monotonic() - started)
    except OSError as exc:
        if _storage_fault(exc, root):  # every other video would fail the same way: stop the run
            raise StorageError.from_os_error(exc) from exc
        error = f"video {path} cannot be read: {exc.strerror or exc}"
        emit({"event": "video_failed", "video": name, "error": error})
        return VideoResult(name, "failed", error=error, seconds=time.monotonic() - started)
    result = VideoResult(name, "prepared", id=vid, clips=len(record["clips"]),
                         frames=sum(c["frames"] for c in record["clips"]), seconds=time.monotonic() - started)  # fmt: skip
    emit({"event": "video_done", "video": name, "id": vid, "clips": result.clips, "frames": result.frames,
          "dropped": record["dropped"], "seconds": result.seconds})  # fmt: skip
    return result


# Faults of the file system that every write meets, whichever file it names.
_DISK_FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _storage_fault(exc: OSError, root: Path) -> bool:
    """Whether `exc` is the dataset folder's fault (a full or read-only disk, a write under `root`)
    rather than the video's (unreadable, not a video)."""
    if exc.errno in _DISK_FULL_OR_READ_ONLY:
        return True
    name = exc.filename
    if not isinstance(name, str | Path):
        return False
    try:
        return Path(name).resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _record_intact(root: Path, record: Mapping[str, Any]) -> bool:
    from emo_cli.fsutil import file_matches

    return all(file_matches(root / clip["files"][kind]["path"], clip["files"][kind]["sha256"])
               for clip in record["clips"] for kind in layout.CLIP_FILES)  # fmt: skip


def prepare_video(path: Path, root: Path, vid: str, source_sha256: str, settings: PrepareSettings,
                  emit: Events) -> dict:  # fmt: skip
    """Steps 2-5 for one video; returns its record (also written as the folder's record.json)."""
    folder = layout.video_dir(root, vid)
    if folder.exists():  # an unfinished earlier attempt: start the video over
        shutil.rmtree(folder)
    info = probe_video(path)
    audio = read_audio(path, settings.sample_rate, info.start)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        raise InputError(f"video {path}: its audio is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); "
                         "training needs the speech that drives the face")  # fmt: skip
    per_frame = settings.sample_rate // settings.fps
    estimate = info.frames_at(settings.fps)
    progress = _Progress(emit, str(path), total=2 * max(estimate, 1))

    tracker = FaceTracker()
    for rgb, gap in read_frames_marked(path, settings.fps):
        tracker.add(rgb, gap)
        progress.advance()
    # Frames past the end of the audio have no speech to learn from.
    observed = tracker.frames[: len(audio) // per_frame]
    progress.set_total(2 * len(observed))
    clips, stats = plan_clips(observed, info.width, info.height, settings.min_frames, settings.max_frames,
                              min_side=math.ceil(settings.resolution / MAX_UPSCALE))  # fmt: skip
    if not clips:
        raise InputError(f"video {path}: no usable face track ({_dropped_text(stats)}); training needs one "
                         f"face, alone in the frame, for at least {settings.min_clip_seconds:g} s without a cut")  # fmt: skip

    folder.mkdir(parents=True, exist_ok=True)
    try:
        written = _write_clips(path, root, vid, clips, observed, audio, settings, progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing half-made stays behind
        raise
    if not written:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"video {path}: the face mesh could not follow the face in any clip "
                         f"({len(clips)} candidate clips); use footage with a clearly visible, roughly frontal face")  # fmt: skip
    record = {
        "format": layout.VIDEO_FORMAT,
        "id": vid,
        "source": path.name,
        "source_sha256": source_sha256,
        "settings": settings.per_video(),
        "width": info.width,
        "height": info.height,
        "frames": len(observed),
        "dropped": {**asdict(stats), "mesh_lost": sum(c.frames for c in clips) - sum(c["frames"] for c in written)},
        "clips": written,
    }
    layout.write_record(root, record)
    return record


class _Progress:
    def __init__(self, emit: Events, video: str, total: int) -> None:
        self.emit, self.video, self.total, self.done = emit, video, total, 0
        self.emit({"event": "video_started", "video": video, "total": total})

    def set_total(self, total: int) -> None:
        self.total = total
        self.emit({"event": "video_progress", "video": self.video, "done": self.done, "total": total})

    def advance(self) -> None:
        self.done += 1
        if self.done % 5 == 0:
            self.emit({"event": "video_progress", "video": self.video, "done": self.done, "total": self.total})


def _dropped_text(stats: TrackStats) -> str:
    return (f"{stats.frames} frames: {stats.no_face} without a face, {stats.multi_face} with several faces, "
            f"{stats.cuts} cuts, {stats.short} in runs too short, {stats.small_face} with a face too small "
            f"for the resolution, {stats.gaps} in holes of the file")  # fmt: skip


class _ClipWriter:
    """Streams one clip's crops into an H.264 file and collects its per-frame arrays."""

    def __init__(self, root: Path, vid: str, number: int, start: int, settings: PrepareSettings) -> None:
        import av

        self.root, self.vid, self.start, self.settings = root, vid, start, settings
        self.name = layout.clip_name(vid, number)
        self.file = AtomicFile(layout.clip_file(root, vid, self.name, "frames"))
        self.container = av.open(str(self.file.tmp), mode="w", format="mp4")
        stream = self.container.add_stream("libx264", rate=settings.fps)
        stream.width = stream.height = settings.resolution
        stream.pix_fmt = "yuv420p"
        # One thread and a keyframe every second: the same bytes on any machine, and a trainer
        # reading a window of frames decodes at most a second of video to reach it.
        stream.options = {"crf": str(settings.crf), "preset": "medium", "threads": "1", "g": str(settings.fps),
                          "keyint_min": str(settings.fps)}  # fmt: skip
        stream.codec_context.thread_count = 1
        self.stream = stream
        self.boxes: list[np.ndarray] = []
        self.points: list[np.ndarray] = []

    @property
    def frames(self) -> int:
        return len(self.points)

    def add(self, crop: np.ndarray, box: np.ndarray, points: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.boxes.append(box.astype(np.float32))
        self.points.append(points.astype(np.float32))

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        self.file.discard()

    def finish(self, audio: np.ndarray, per_frame: int, crop: tuple[int, int, int]) -> dict:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.file.commit()
        stop = self.start + self.frames
        samples = audio[self.start * per_frame : stop * per_frame]
        if samples.size < self.frames * per_frame:
            samples = np.concatenate([samples, np.zeros(self.frames * per_frame - samples.size, np.float32)])
        landmarks = np.stack(self.points)
        arrays = {"audio": samples.astype(np.float32), "boxes": np.stack(self.boxes),
                  "landmarks": landmarks, "speed": head_speeds(landmarks)}  # fmt: skip
        for kind, array in arrays.items():
            with atomic_path(layout.clip_file(self.root, self.vid, self.name, kind)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        files = {}
        for kind in layout.CLIP_FILES:
            path = layout.clip_file(self.root, self.vid, self.name, kind)
            files[kind] = {"path": layout.relative_clip_file(self.vid, self.name, kind), "sha256": sha256_file(path),
                           "bytes": path.stat().st_size}  # fmt: skip
        speed = arrays["speed"]
        return {
            "id": self.name,
            "start_frame": self.start,
            "frames": self.frames,
            "seconds": round(self.frames / self.settings.fps, 3),
            "crop": {"x0": crop[0], "y0": crop[1], "side": crop[2]},
            "speed": {"mean": round(float(speed.mean()), 4), "max": round(float(speed.max()), 4)},
            "files": files,
        }


def _write_clips(path: Path, root: Path, vid: str, clips: list[ClipPlan], observed: list[FrameFaces],
                 audio: np.ndarray, settings: PrepareSettings, progress: _Progress) -> list[dict]:  # fmt: skip
    """Pass 2: crop, mesh and encode every clip; a frame the mesh loses ends the clip's current piece."""
    import cv2

    from emo_cli.backends.face import face_mesh_points

    per_frame = settings.sample_rate // settings.fps
    size = settings.resolution
    owner = {i: clip for clip in clips for i in range(clip.start, clip.stop)}
    written: list[dict] = []
    writer: _ClipWriter | None = None
    current: ClipPlan | None = None

    def close(keep: bool) -> None:
        nonlocal writer
        if writer is not None:
            if keep and writer.frames >= settings.min_frames:
                written.append(writer.finish(audio, per_frame, current.crop))
                pause_point("prepare:clip", job=path.name)  # tests stop a video half made here
            else:
                writer.discard()
            writer = None

    try:
        for i, rgb in enumerate(read_frames(path, settings.fps)):
            if i >= len(observed):
                break
            progress.advance()
            clip = owner.get(i)
            if clip is not current:
                close(keep=True)
                current = clip
            if clip is None:
                continue
            x0, y0, side = clip.crop
            region = rgb[y0 : y0 + side, x0 : x0 + side]
            interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
            crop = np.ascontiguousarray(cv2.resize(region, (size, size), interpolation=interpolation))
            points = face_mesh_points(crop)
            if points is None:
                close(keep=True)
                continue
            if writer is None:
                writer = _ClipWriter(root, vid, len(written), i, settings)
            scale = size / side
            box = (np.array(observed[i].box) - [x0, y0, x0, y0]) * scale
            writer.add(crop, box, points)
        close(keep=True)
    except BaseException:
        close(keep=False)
        raise
    return written


def build_index(root: Path, records: Mapping[str, tuple[dict, str]], results: list[VideoResult],
                settings: PrepareSettings) -> dict:  # fmt: skip
    """The index document: videos, clips with their split, the speed table, the fingerprint."""
    from emo_cli import __version__

    split = layout.split_identities([identity for _, identity in records.values()], settings.val_fraction,
                                    settings.split_seed)  # fmt: skip
    clips, videos = [], []
    for vid in sorted(records):
        record, identity = records[vid]
        videos.append({"id": vid, "source": record["source"], "source_sha256": record["source_sha256"],
                       "identity": identity, "split": split[identity], "width": record["width"],
                       "height": record["height"], "frames": record["frames"], "dropped": record["dropped"],
                       "clips": [c["id"] for c in record["clips"]]})  # fmt: skip
        for clip in record["clips"]:
            clips.append({**clip, "video": vid, "identity": identity, "split": split[identity]})
    splits = {}
    for name in ("train", "val"):
        members = [c for c in clips if c["split"] == name]
        splits[name] = {"identities": sorted({c["identity"] for c in members}), "clips": len(members),
                        "frames": sum(c["frames"] for c in members)}  # fmt: skip
    # Buckets come from the training clips (all clips when every identity is held out for val).
    fitted_on = "train" if splits["train"]["clips"] else "all"
    speeds = np.concatenate([np.load(root / c["files"]["speed"]["path"]) for c in clips
                             if fitted_on == "all" or c["split"] == "train"])  # fmt: skip
    return {
        "format": layout.INDEX_FORMAT,
        "fingerprint": layout.dataset_fingerprint(settings.to_dict(), clips),
        "created_by": f"emo-cli {__version__}",
        "settings": settings.to_dict(),
        "speed": {**fit_speed_table(speeds, settings.speed_buckets), "fitted_on": fitted_on},
        "splits": splits,
        "videos": videos,
        "clips": clips,
        "failed": [{"source": r.source, "error": r.error} for r in results if r.status == "failed"],
    }
