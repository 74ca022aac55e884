"""Provenance tags: what made a video, stored in the MP4 itself and in a JSON sidecar.

The tags go into the container at mux time (`-metadata key=value` with
`-movflags +use_metadata_tags`, so custom keys survive in MP4) and read back from the file
alone with `read_tags`. The sidecar `<output>.provenance.json` carries the same facts plus the
output's own hash, for tools that do not read MP4 metadata. `ProvenanceRecord`
(`emo_cli.provenance.record`) builds both from one job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emo_cli.errors import MediaError
from emo_cli.fsutil import NotRegularFileError, atomic_write_text, require_regular_file

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
C2PA_UNSUPPORTED = "unsupported"  # signing is on, but C2PA cannot sign the output's container


def sidecar_path(output: Path | str) -> Path:
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def write_sidecar(output: Path, doc: Mapping[str, Any]) -> Path:
    """Write the sidecar document `doc` (see `ProvenanceRecord.sidecar`) beside `output`,
    atomically; returns its path."""
    path = sidecar_path(output)
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def read_tags(path: Path | str) -> dict[str, str]:
    """The emo-cli provenance tags stored in the video `path` (empty if it has none).

    Reads the container alone; the sidecar is not consulted.
    """
    import av

    try:
        require_regular_file(path)  # a named pipe would make the demuxer wait for ever
        with av.open(os.fspath(path)) as container:
            metadata = dict(container.metadata)
    except NotRegularFileError as exc:
        raise MediaError(f"{path} is {exc.kind}, not a video file") from exc
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot read the metadata of {path}: {exc}") from exc
    # Matroska (WebM) keeps tag names in upper case; MP4 as written.
    by_name = {key.lower(): value for key, value in metadata.items()}
    return {key: by_name[key] for key in KEYS if key in by_name}


def has_provenance(tags: Mapping[str, str]) -> bool:
    return tags.get("emo_tool") == TOOL
