"""verify_video: everything a video says about being AI-generated, checked and put plainly.

Three independent marks, so that stripping one leaves the others: C2PA content credentials
(signed, tamper-evident), the container's provenance tags with their JSON sidecar (readable by
anything), and the invisible watermark in the pixels (survives re-encoding, downscaling and
metadata stripping). A video counts as marked as AI-generated when any of them says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emo_cli.errors import MediaError
from emo_cli.fsutil import NotRegularFileError, require_regular_file, sha256_file
from emo_cli.media.probe import open_video
from emo_cli.provenance.credentials import Credentials, read_credentials, trust_anchor_text
from emo_cli.provenance.tags import C2PA_UNSUPPORTED, has_provenance, read_tags, sidecar_path
from emo_cli.provenance.watermark import ID_BITS, Detection, detect

# Frames read for the watermark vote: spread over the whole video, enough for a firm vote.
WATERMARK_FRAMES = 120


@dataclass(frozen=True)
class SidecarCheck:
    path: Path
    present: bool
    matches: bool | None = None  # None when absent or unreadable
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "present": self.present, "matches": self.matches,
                "problems": list(self.problems)}  # fmt: skip


@dataclass(frozen=True)
class Verification:
    file: Path
    credentials: Credentials
    tags: dict[str, str]
    sidecar: SidecarCheck
    watermark: Detection
    job_id: str | None  # the job id the tags or credentials claim, if any
    marks: tuple[str, ...] = field(default=())  # which marks say "AI-generated"
    c2pa_note: str | None = None  # why the video carries no C2PA manifest (its container), if known

    @property
    def marked(self) -> bool:
        return bool(self.marks)

    @property
    def watermark_matches_job(self) -> bool | None:
        """Whether the watermark carries the claimed job id (None: nothing to compare)."""
        if not self.watermark.marked or self.job_id is None:
            return None
        return self.job_id[: ID_BITS // 4] == self.watermark.job_id_prefix

    @property
    def exit_code(self) -> int:
        return 0 if self.marked else 1

    def verdict(self) -> str:
        if not self.marked:
            return (
                f"{self.file.name} carries no AI-generated mark: no content credentials saying so, "
                "no emo-cli provenance tags and no emo-cli watermark were found."
            )
        return f"{self.file.name} is marked as AI-generated ({'; '.join(self.marks)})."

    def to_dict(self) -> dict[str, Any]:
        wm = self.watermark
        return {
            "file": str(self.file),
            "ai_generated": self.marked,
            "marks": list(self.marks),
            "verdict": self.verdict(),
            "c2pa": self.credentials.to_dict(),
            "c2pa_note": self.c2pa_note,
            "tags": self.tags,
            "sidecar": self.sidecar.to_dict(),
            "watermark": {
                "found": wm.marked,
                "job_id_prefix": wm.job_id_prefix if wm.marked else None,
                "confidence": wm.confidence,
                "frames": wm.frames,
                "scale": wm.scale,
                "matches_job": self.watermark_matches_job,
            },
        }


def verify_video(path: Path | str, *, trust_anchor: Path | None = None) -> Verification:
    """Check every provenance mark of the video `path`.

    Raises:
        MediaError: the file cannot be opened or holds no video stream.
        ProvenanceError: the trust anchor file is unreadable.
    """
    path = Path(path)
    try:
        require_regular_file(path)  # a named pipe would make the demuxer wait for ever
    except NotRegularFileError as exc:
        raise MediaError(f"{path} is {exc.kind}, not a video file") from exc
    except OSError as exc:
        raise MediaError(f"cannot open {path}: {exc.strerror or exc}") from exc
    anchors = trust_anchor_text(trust_anchor) if trust_anchor is not None else None
    tags = read_tags(path)
    detection = detect(_sample_frames(path), scales=_scales(tags, _video_width(path)))
    credentials = read_credentials(path, anchors)
    sidecar = check_sidecar(path, tags)
    emo = credentials.emo or {}
    job_id = tags.get("emo_job_id") or (str(emo["job_id"]) if emo.get("job_id") else None)

    marks = []
    if credentials.ai_generated:
        who = f", signed by {credentials.signer}" if credentials.signer else ""
        marks.append(f"C2PA content credentials, {credentials.status}{who}")
    if tags.get("ai_generated") == "true" or has_provenance(tags):
        marks.append("emo-cli provenance tags in the container")
    if detection.marked:
        marks.append(
            f"invisible watermark of job {detection.job_id_prefix}, confidence {detection.confidence:.2f}"
        )
    return Verification(
        file=path, credentials=credentials, tags=tags, sidecar=sidecar, watermark=detection, job_id=job_id,
        marks=tuple(marks), c2pa_note=c2pa_note(path, tags),
    )  # fmt: skip


def c2pa_note(video: Path, tags: dict[str, str]) -> str | None:
    """The sidecar's note on why the video is not signed, when its tags say C2PA could not sign
    its container (`emo_c2pa=unsupported`, e.g. a WebM)."""
    if tags.get("emo_c2pa") != C2PA_UNSUPPORTED:
        return None
    try:
        note = json.loads(sidecar_path(video).read_text(encoding="utf-8")).get("emo_c2pa_note")
    except (OSError, ValueError, AttributeError):
        note = None
    return str(note) if note else "not signed: C2PA cannot sign this container"


def check_sidecar(video: Path, tags: dict[str, str]) -> SidecarCheck:
    """Is `<video>.provenance.json` there, about this very file, and saying what the tags say?"""
    path = sidecar_path(video)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SidecarCheck(path, present=False)
    except (OSError, ValueError) as exc:
        return SidecarCheck(path, present=True, matches=None, problems=(f"unreadable: {exc}",))
    if not isinstance(doc, dict):
        return SidecarCheck(path, present=True, matches=False, problems=("not a JSON object",))
    problems = []
    if doc.get("output_sha256") != sha256_file(video):
        problems.append("output_sha256 is not this file's sha256 (the video was changed or re-encoded)")
    for key, value in tags.items():
        if key not in doc:
            problems.append(f"{key} is missing")
            continue
        written = doc[key]
        if key == "emo_settings":
            same = written == json.loads(value)
        elif key == "ai_generated":
            same = written is (value == "true")
        else:
            same = str(written) == value
        if not same:
            problems.append(f"{key} differs from the container's tag")
    return SidecarCheck(path, present=True, matches=not problems, problems=tuple(problems))


def _scales(tags: dict[str, str], width: int) -> tuple[float, ...]:
    """Upscale factors to read the watermark at: as is, a half-size copy, and the size the
    tags say the video was rendered at (when it is now another size)."""
    scales = [1.0, 2.0]
    try:
        settings = json.loads(tags.get("emo_settings", "{}"))
        resolution = int(settings.get("resolution", 0))
    except (ValueError, TypeError, AttributeError):
        resolution = 0
    if resolution and width:
        ratio = resolution / width
        if all(abs(ratio - s) > 0.01 for s in scales):
            scales.append(ratio)
    return tuple(scales)


def _video_width(path: Path) -> int:
    with open_video(path) as container:
        return container.streams.video[0].width if container.streams.video else 0


def _sample_frames(path: Path) -> Iterator[np.ndarray]:
    """Up to WATERMARK_FRAMES frames, spread evenly over the video, as RGB arrays."""
    import av

    with open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream; emo verify reads videos")
        stream = container.streams.video[0]
        total = stream.frames or 0
        step = max(1, math.ceil(total / WATERMARK_FRAMES)) if total else 1
        taken = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % step:
                    continue
                yield frame.to_ndarray(format="rgb24")
                taken += 1
                if taken >= WATERMARK_FRAMES:
                    break
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode the video of {path}: {exc}") from exc
