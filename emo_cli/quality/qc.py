"""measure_video: every quality measure of one video, and the gates that pass or fail it.

The video is read once, frame by frame (memory does not grow with its length): the face mesh
of each frame gives the mouth, eyes and stable landmarks, and each frame is compared with the
reference (the portrait aligned to the first frame, or the first frame). The audio comes from
the video itself (lip-sync and silence are about what a viewer hears with what they see); the
input audio, when given, is what the duration gate compares the video against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emo_cli.errors import MediaError
from emo_cli.provenance.verify import Verification
from emo_cli.quality.chunk import (
    ChunkFigures,
    Landmarker,
    chunk_figures,
    default_landmarker,
    load_reference_image,
    reference_for,
)
from emo_cli.quality.measures import (
    Appearance,
    FaceGeometry,
    Reference,
    appearance,
    blinks,
    face_geometry,
    frame_loudness,
    landmark_jitter,
    lip_sync,
    mouth_at_rest,
)
from emo_cli.quality.thresholds import Thresholds

AUDIO_RATE = 16000  # the VAD's rate; loudness is measured at it too
DEFAULT_CHUNK_FRAMES = 50  # chunk length for a video whose tags do not say how it was rendered


@dataclass(frozen=True)
class Gate:
    """One measure's verdict: passed is None when it could not be judged (and does not fail)."""

    name: str
    passed: bool | None
    value: str  # the figure, as shown
    limit: str  # the pass mark, as shown
    detail: str = ""
    chunk: int | None = None  # the first chunk that fails it, for per-chunk measures

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "value": self.value, "limit": self.limit,
                "detail": self.detail, "chunk": self.chunk}  # fmt: skip


@dataclass
class QcReport:
    """What `emo qc` found about one video; `to_dict` is the `--json` output."""

    file: Path
    fps: float
    frames: int
    width: int
    height: int
    reference: str  # "portrait <path>" or "first frame"
    gates: list[Gate]
    chunks: list[ChunkFigures]
    figures: dict[str, Any]  # every number measured, by measure
    series: dict[str, list[float]]  # per frame: mouth, loudness, speech (for plots)
    seconds: float  # time taken to measure
    thumbnails: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, small RGB)

    @property
    def passed(self) -> bool:
        return all(g.passed is not False for g in self.gates)

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if g.passed is False]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def verdict(self) -> str:
        if self.passed:
            return f"PASS: {self.file.name} passes every quality gate."
        parts = []
        for gate in self.failed:
            where = f" at chunk {gate.chunk}" if gate.chunk is not None else ""
            parts.append(f"{gate.name}{where} ({gate.detail or gate.value})")
        return f"FAIL: {self.file.name} fails {len(parts)} gate{'s' if len(parts) != 1 else ''}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "passed": self.passed,
            "verdict": self.verdict(),
            "fps": self.fps,
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "reference": self.reference,
            "gates": [g.to_dict() for g in self.gates],
            "chunks": [c.to_dict() for c in self.chunks],
            "figures": self.figures,
            "seconds": round(self.seconds, 3),
        }


def measure_video(
    video: Path | str,
    *,
    audio: Path | str | None = None,
    portrait: Path | str | None = None,
    thresholds: Thresholds | None = None,
    chunk_frames: int | None = None,
    thumbnails: int = 0,
    landmarker: Landmarker | None = None,
) -> QcReport:
    """Measure `video` and gate it.

    `audio`: the input audio track it was made from (for the duration gate); `portrait`: the
    image it was made from (the appearance reference; without it, the first frame in which a
    face is found); `chunk_frames`: chunk length for the per-chunk measures (default: from the
    video's tags, else 50); `thumbnails`: keep that many small frames, evenly spread, for a
    report; `landmarker`: the face mesh (default: MediaPipe's bundled one).

    Raises:
        MediaError: the video cannot be opened or decoded.
        InputError: the audio or portrait cannot be read, or the portrait shows no face.
    """
    from emo_cli.provenance.verify import verify_video
    from emo_cli.quality.vad import frame_speech
    from emo_cli.quality.video import video_audio, video_frames, video_info

    began = time.perf_counter()
    video = Path(video)
    limits = thresholds or Thresholds()
    mesh = landmarker or default_landmarker()
    info = video_info(video)
    # Inputs first, before any frame is measured: an unreadable one fails at once.
    input_audio = _decode_input(audio) if audio is not None else None
    track = _FaceTrack(mesh, portrait)
    verification = verify_video(video) if limits.require_provenance else None
    tags = verification.tags if verification is not None else _tags(video)
    chunk_frames = chunk_frames or _chunk_frames(tags) or DEFAULT_CHUNK_FRAMES

    # Thumbnails of every `step`-th frame; when there are twice too many, every other one goes
    # and the step doubles, so memory stays bounded whatever the video's length.
    kept: list[tuple[int, np.ndarray]] = []
    step = 1
    count = 0
    for index, rgb in enumerate(video_frames(video)):
        track.add(index, rgb)
        count += 1
        if thumbnails and index % step == 0:
            kept.append((index, _thumbnail(rgb)))
            if len(kept) >= 2 * thumbnails:
                kept, step = kept[::2], step * 2
    if count == 0:
        raise MediaError(f"{video} has no video frames")
    if len(kept) > thumbnails:
        picks = np.linspace(0, len(kept) - 1, thumbnails).round().astype(int)
        kept = [kept[i] for i in picks]

    own_audio = video_audio(video, AUDIO_RATE)
    mouth = track.series("mouth", count)
    eyes = track.series("eyes", count)
    loudness = frame_loudness(own_audio, AUDIO_RATE, info.fps, count) if own_audio is not None else None
    speech = frame_speech(own_audio, info.fps, count) if own_audio is not None else None

    chunks = [
        chunk_figures(i, start, n, [track.looks[f] for f in range(start, start + n) if f in track.looks])
        for i, start in enumerate(range(0, count, chunk_frames))
        for n in [min(chunk_frames, count - start)]
    ]
    figures: dict[str, Any] = {}
    gates = [
        _face_gate(track, count, limits, figures),
        _lip_sync_gate(mouth, loudness, limits, figures),
        _rest_gate(mouth, speech, track.rest_mouth(mouth), limits, figures),
        *_appearance_gates(chunks, limits, figures),
        _jitter_gate(track, limits, figures),
        _blink_gate(eyes, info.fps, limits, figures),
        _duration_gate(count, info.fps, own_audio, input_audio, limits, figures),
    ]
    if verification is not None:
        gates.append(_provenance_gate(verification, figures))
    series = {
        "mouth": [round(float(v), 4) for v in mouth],
        "loudness": [] if loudness is None else [round(float(v), 4) for v in loudness],
        "speech": [] if speech is None else [int(v) for v in speech],
    }
    return QcReport(video, info.fps, count, info.width, info.height, track.reference_name, gates, chunks,
                    figures, series, time.perf_counter() - began, kept)  # fmt: skip


def _tags(video: Path) -> dict[str, str]:
    from emo_cli.provenance.tags import read_tags

    return read_tags(video)


def _chunk_frames(tags: dict[str, str]) -> int | None:
    import json

    try:
        value = json.loads(tags.get("emo_settings", "{}")).get("chunk_frames")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _decode_input(audio: Path | str) -> np.ndarray:
    from emo_cli.media.audio import decode_audio

    return decode_audio(audio, AUDIO_RATE)


def _thumbnail(rgb: np.ndarray, size: int = 160) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class _FaceTrack:
    """Per-frame face figures, gathered as the frames stream past."""

    def __init__(self, mesh: Landmarker, portrait: Path | str | None) -> None:
        self.mesh = mesh
        self.portrait = Path(portrait) if portrait is not None else None
        self.portrait_image = load_reference_image(self.portrait) if self.portrait is not None else None
        self.geometry: dict[int, FaceGeometry] = {}
        self.looks: dict[int, Appearance] = {}
        self.reference: Reference | None = None
        self.portrait_mouth: float | None = None
        self.reference_name = f"portrait {self.portrait}" if self.portrait else "first frame"

    def add(self, index: int, rgb: np.ndarray) -> None:
        landmarks = self.mesh(rgb)
        if landmarks is None:  # counted by the "face found" gate
            return
        geometry = face_geometry(landmarks)
        if self.reference is None:
            self.reference = self._make_reference(rgb, geometry)
        self.geometry[index] = geometry
        self.looks[index] = appearance(rgb, geometry, self.reference)

    def _make_reference(self, first: np.ndarray, geometry: FaceGeometry) -> Reference:
        if self.portrait_image is None:
            return reference_for(first, geometry)
        landmarks = self.mesh(self.portrait_image)
        self.portrait_mouth = face_geometry(landmarks).mouth if landmarks is not None else None
        return reference_for(first, geometry, self.portrait_image, self.mesh,
                             portrait_name=f"the portrait {self.portrait}")  # fmt: skip

    def series(self, name: str, count: int) -> np.ndarray:
        """A per-frame figure over all frames, frames without a face filled from their neighbours."""
        known = sorted(self.geometry)
        values = np.array([getattr(self.geometry[i], name) for i in known], float)
        if not known:
            return np.zeros(count)
        return np.interp(np.arange(count), known, values)

    def rest_mouth(self, mouth: np.ndarray) -> float:
        """The closed mouth's aperture: the portrait's, else the video's 5th percentile."""
        if self.portrait_mouth is not None:
            return self.portrait_mouth
        return float(np.percentile(mouth, 5)) if mouth.size else 0.0


def _face_gate(track: _FaceTrack, count: int, limits: Thresholds, figures: dict) -> Gate:
    share = len(track.geometry) / count
    figures["face"] = {"frames_with_face": len(track.geometry), "frames": count, "share": round(share, 4)}
    return Gate("face found", share >= limits.min_face_found, f"{share:.1%} of frames",
                f">= {limits.min_face_found:.0%}", "" if share >= limits.min_face_found
                else f"the face mesh lost the face in {count - len(track.geometry)} of {count} frames")  # fmt: skip


def _lip_sync_gate(mouth: np.ndarray, loudness: np.ndarray | None, limits: Thresholds, figures: dict) -> Gate:
    name = "lip-sync"
    limit = (f"r >= {limits.lip_sync_min_r:.2f}, |lag| <= {limits.max_lag_frames}, "
             f"opening >= {limits.min_mouth_range:.3f}")  # fmt: skip
    if loudness is None:
        figures["lip_sync"] = None
        return Gate(name, False, "no audio", limit, "the video has no audio track to follow")
    sync = lip_sync(mouth, loudness, limits.lag_search_frames)
    figures["lip_sync"] = {"correlation": sync.correlation, "lag_frames": sync.lag, "mouth_range": sync.mouth_range,
                           "correlations": {str(k): v for k, v in sync.correlations.items()}}  # fmt: skip
    problems = []
    if sync.mouth_range < limits.min_mouth_range:
        problems.append(f"the mouth hardly moves (opens {sync.mouth_range:.3f} face heights)")
    if sync.correlation < limits.lip_sync_min_r:
        problems.append(f"mouth and loudness correlate at r = {sync.correlation:.2f}")
    if abs(sync.lag) > limits.max_lag_frames and sync.mouth_range >= limits.min_mouth_range:
        side = "before" if sync.lag < 0 else "after"
        problems.append(f"the mouth moves {abs(sync.lag)} frames {side} the sound")
    value = f"r {sync.correlation:.2f} at lag {sync.lag:+d}, opening {sync.mouth_range:.3f}"
    return Gate(name, not problems, value, limit, "; ".join(problems))


def _rest_gate(mouth: np.ndarray, speech: np.ndarray | None, rest: float, limits: Thresholds, figures: dict) -> Gate:
    name = "mouth at rest in silence"
    limit = f">= {limits.rest_min_closed:.0%} closed"
    if speech is None:
        figures["mouth_at_rest"] = None
        return Gate(name, None, "no audio", limit, "the video has no audio track")
    result = mouth_at_rest(mouth, speech, rest, limits.rest_tolerance, limits.rest_margin_frames)
    figures["mouth_at_rest"] = {"silent_frames": result.silent_frames, "closed_fraction": result.closed_fraction,
                                "rest_aperture": result.rest, "speech_frames": int(speech.sum())}  # fmt: skip
    if result.closed_fraction is None or result.silent_frames < limits.rest_min_silent_frames:
        return Gate(name, None, f"{result.silent_frames} silent frames", limit, "too little silence to judge")
    ok = result.closed_fraction >= limits.rest_min_closed
    value = f"{result.closed_fraction:.0%} of {result.silent_frames} silent frames closed"
    return Gate(name, ok, value, limit, "" if ok else f"the mouth is open in silence ({value})")


def _appearance_gates(chunks: list[ChunkFigures], limits: Thresholds, figures: dict) -> list[Gate]:
    figures["chunks"] = len(chunks)

    def gate(name: str, attr: str, ok: Callable[[float], bool], limit: str, unit: str) -> Gate:
        values = [(c.index, getattr(c, attr)) for c in chunks if getattr(c, attr) is not None]
        if not values:
            return Gate(name, None, "no face", limit, "no frame could be measured")
        bad = [(i, v) for i, v in values if not ok(v)]
        worst = min(values, key=lambda iv: (ok(iv[1]), -abs(iv[1]) if attr.startswith("delta") else iv[1]))
        value = f"worst {worst[1]:.3g}{unit} (chunk {worst[0]})"
        if not bad:
            return Gate(name, True, value, limit)
        first = bad[0]
        chunk = chunks[first[0]]
        label = {"ssim": "SSIM", "delta_e_face": "a face colour shift of", "sharpness": "sharpness",
                 "delta_e_background": "a background colour shift of"}[attr]  # fmt: skip
        detail = (f"chunk {first[0]} (frames {chunk.start}-{chunk.start + chunk.count - 1}) has {label} "
                  f"{first[1]:.3g}{unit}; {len(bad)} of {len(values)} chunks fail")  # fmt: skip
        return Gate(name, False, value, limit, detail, chunk=first[0])

    return [
        gate("identity drift (SSIM)", "ssim", lambda v: v >= limits.min_ssim, f">= {limits.min_ssim:.2f} per chunk", ""),
        gate("colour drift, face", "delta_e_face", lambda v: v <= limits.max_delta_e_face,
             f"<= {limits.max_delta_e_face:g} dE per chunk", " dE"),
        gate("colour drift, background", "delta_e_background", lambda v: v <= limits.max_delta_e_background,
             f"<= {limits.max_delta_e_background:g} dE per chunk", " dE"),
        gate("sharpness", "sharpness", lambda v: v >= limits.min_sharpness,
             f">= {limits.min_sharpness:.2f} x reference per chunk", "x"),
    ]  # fmt: skip


def _jitter_gate(track: _FaceTrack, limits: Thresholds, figures: dict) -> Gate:
    known = sorted(track.geometry)
    runs = [track.geometry[i].stable for i in known]
    jitter = landmark_jitter(runs)
    figures["jitter_px_per_frame"] = jitter
    ok = jitter <= limits.max_jitter_px
    return Gate("landmark jitter", ok, f"{jitter:.2f} px/frame", f"<= {limits.max_jitter_px:g} px/frame",
                "" if ok else f"stable landmarks shake {jitter:.2f} px per frame beyond head motion")  # fmt: skip


def _blink_gate(eyes: np.ndarray, fps: float, limits: Thresholds, figures: dict) -> Gate:
    found = blinks(eyes, fps)
    seconds = len(eyes) / fps
    figures["blinks"] = {"count": found.count, "per_minute": found.per_minute}
    judged_low = seconds >= limits.min_blink_seconds
    limit = f"<= {limits.max_blinks_per_minute:g}/min" + (
        f", >= {limits.min_blinks_per_minute:g}/min" if judged_low else "")
    problems = []
    if found.per_minute > limits.max_blinks_per_minute:
        problems.append(f"{found.per_minute:g} blinks per minute: the eyes flicker")
    if judged_low and found.per_minute < limits.min_blinks_per_minute:
        problems.append(f"{found.per_minute:g} blinks per minute: a fixed stare")
    return Gate("blink rate", not problems, f"{found.per_minute:g}/min ({found.count} blink{'s' if found.count != 1 else ''})", limit,
                "; ".join(problems))  # fmt: skip


def _duration_gate(frames: int, fps: float, own: np.ndarray | None, given: np.ndarray | None,
                   limits: Thresholds, figures: dict) -> Gate:  # fmt: skip
    frame_s = 1.0 / fps
    own_s = None if own is None else len(own) / AUDIO_RATE
    given_s = None if given is None else len(given) / AUDIO_RATE
    target_s = given_s if given_s is not None else own_s
    figures["duration"] = {"frames": frames, "video_seconds": round(frames * frame_s, 4),
                           "audio_stream_seconds": None if own_s is None else round(own_s, 4),
                           "input_audio_seconds": None if given_s is None else round(given_s, 4)}  # fmt: skip
    tol = limits.duration_tolerance_frames
    limit = f"frames = round(audio s x fps) +-{tol}; audio stream = input +-1 frame"
    if target_s is None:
        return Gate("exact duration", False, f"{frames} frames, no audio", limit, "the video has no audio track")
    expected = round(target_s * fps)
    figures["duration"]["expected_frames"] = expected
    problems = []
    if abs(frames - expected) > tol:
        problems.append(f"{frames} frames where {target_s:.3f} s of audio at {fps:g} fps needs {expected}")
    if own_s is None:
        problems.append("the video has no audio track")
    elif given_s is not None and abs(own_s - given_s) > frame_s:
        word = "truncated" if own_s < given_s else "longer than the input"
        problems.append(f"the audio track is {own_s:.3f} s, the input {given_s:.3f} s ({word})")
    value = f"{frames} frames / {expected} expected"
    if own_s is not None:
        value += f", audio {own_s:.2f} s"
    return Gate("exact duration", not problems, value, limit, "; ".join(problems))


def _provenance_gate(verification: Verification, figures: dict) -> Gate:
    """emo verify's checks, gated: every mark the video's own tags promise must be there."""
    from emo_cli.provenance.tags import has_provenance

    v = verification
    tags_ok = has_provenance(v.tags)
    wm = v.watermark
    figures["provenance"] = {
        "tags": tags_ok, "sidecar_present": v.sidecar.present, "sidecar_matches": v.sidecar.matches,
        "c2pa": v.credentials.status, "watermark_found": wm.marked,
        "watermark_job_id_prefix": wm.job_id_prefix if wm.marked else None,
        "watermark_matches_job": v.watermark_matches_job, "ai_generated": v.marked,
    }  # fmt: skip
    problems = []
    if not tags_ok:
        problems.append("provenance tags absent")
    if not v.sidecar.present:
        problems.append("sidecar absent")
    elif not v.sidecar.matches:
        problems.append("sidecar does not match: " + "; ".join(v.sidecar.problems))
    if v.tags.get("emo_c2pa", "off") != "off" and v.credentials.status not in ("valid", "trusted"):
        problems.append(f"C2PA credentials {v.credentials.status} where the tags say the video was signed")
    if tags_ok and v.tags.get("emo_watermark", "off") != "off" and not v.watermark_matches_job:
        problems.append("the watermark is missing or carries another job id than the tags")
    mark = f"watermark {'found, job ' + str(wm.job_id_prefix) if wm.marked else 'not found'}"
    detail = "; ".join(problems)
    if problems and not tags_ok and wm.marked:
        detail += f"; {mark} (the video is still marked as AI-generated)"
    sidecar = "matches" if v.sidecar.matches else "differs" if v.sidecar.present else "absent"
    value = f"tags {'present' if tags_ok else 'absent'}, C2PA {v.credentials.status}, sidecar {sidecar}, {mark}"
    return Gate("provenance", not problems, value, "tags, sidecar, C2PA if signed, watermark of this job", detail)
