"""Provenance tags: what made a video, stored in the MP4 itself and in a JSON sidecar.

The tags go into the container at mux time (`-metadata key=value` with
`-movflags +use_metadata_tags`, so custom keys survive in MP4) and read back from the file
alone with `read_tags`. The sidecar `<output>.provenance.json` carries the same facts plus the
output's own hash, for tools that do not read MP4 metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emo_cli.errors import MediaError
from emo_cli.fsutil import atomic_write_text, sha256_file
from emo_cli.planning.job import Job
from emo_cli.provenance.identity import SigningIdentity

TOOL = "emo-cli"
SIDECAR_SUFFIX = ".provenance.json"
SIDECAR_FORMAT = 1
# Every key emo-cli writes, in display order. `ai_generated` is unprefixed on purpose: it is
# the one fact any reader should find without knowing emo-cli.
KEYS = (
    "ai_generated",
    "emo_tool",
    "emo_tool_version",
    "emo_backend",
    "emo_backend_version",
    "emo_weights",
    "emo_job",
    "emo_job_id",
    "emo_portrait_sha256",
    "emo_audio_sha256",
    "emo_seed",
    "emo_settings",
    "emo_consent",
    "emo_watermark",
    "emo_c2pa",
    "emo_created",
)
WATERMARK_OFF = "off"
C2PA_OFF = "off"


def provenance_tags(
    job: Job, *, signer: SigningIdentity | None = None, created: datetime | None = None
) -> dict[str, str]:
    """The tags for `job`'s video, as strings ready for `-metadata`.

    `emo_watermark` is `dwtDctSvd:<job id prefix>` or `off`; `emo_c2pa` says who signs the
    content credentials (`local`, `manifest` or `environment`) or `off`; both opt-outs are
    thus recorded in the file itself. `emo_consent` is the portrait's consent reference.
    """
    from emo_cli import __version__
    from emo_cli.provenance.watermark import watermark_tag

    created = (created or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    tags = {
        "ai_generated": "true",
        "emo_tool": TOOL,
        "emo_tool_version": __version__,
        "emo_backend": job.settings.backend,
        "emo_backend_version": job.backend_version,
        "emo_weights": job.weights_identity,
        "emo_job": job.name,
        "emo_job_id": job.id,
        "emo_portrait_sha256": job.portrait.sha256,
        "emo_audio_sha256": job.audio.sha256,
        "emo_seed": str(job.settings.seed),
        "emo_settings": json.dumps(job.settings.to_dict(), sort_keys=True, separators=(",", ":")),
    }
    consent = job.consent
    if consent is not None and consent.get("reference"):
        tags["emo_consent"] = str(consent["reference"])
    tags["emo_watermark"] = watermark_tag(job.id) if job.settings.watermark else WATERMARK_OFF
    tags["emo_c2pa"] = signer.origin if signer is not None else C2PA_OFF
    tags["emo_created"] = created.isoformat().replace("+00:00", "Z")
    return tags


def container_metadata(tags: Mapping[str, str]) -> dict[str, str]:
    """What the mux writes into the container: `tags`, then the standard `creation_time` and
    `comment`, for players that show only those."""
    metadata = dict(tags)
    if "emo_created" in tags:
        metadata["creation_time"] = tags["emo_created"]
    metadata["comment"] = f"AI-generated with {TOOL} ({tags.get('emo_backend', 'unknown')} backend)"
    return metadata


def sidecar_path(output: Path | str) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def write_sidecar(output: Path, tags: Mapping[str, str]) -> Path:
    """Write `<output>.provenance.json` atomically; returns its path."""
    doc: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "output": output.name,
        "output_sha256": sha256_file(output),
    }
    for key, value in tags.items():
        if key == "emo_settings":
            doc[key] = json.loads(value)
        elif key == "emo_seed":
            doc[key] = int(value)
        elif key == "ai_generated":
            doc[key] = value == "true"
        else:
            doc[key] = value
    path = sidecar_path(output)
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def read_tags(path: Path | str) -> dict[str, str]:
    """The emo-cli provenance tags stored in the video `path` (empty if it has none).

    Reads the container alone; the sidecar is not consulted.
    """
    import av

    try:
        with av.open(os.fspath(path)) as container:
            metadata = dict(container.metadata)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot read the metadata of {path}: {exc}") from exc
    return {key: metadata[key] for key in KEYS if key in metadata}


def has_provenance(tags: Mapping[str, str]) -> bool:
    return tags.get("emo_tool") == TOOL
