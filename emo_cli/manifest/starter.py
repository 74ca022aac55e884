"""`emo init`: a commented starter manifest and the schema file it points editors to."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from emo_cli.errors import UsageError
from emo_cli.fsutil import atomic_write_text
from emo_cli.manifest.schema import SCHEMA_FILENAME, effective_schema

MANIFEST_FILENAME = "manifest.yaml"


def starter_text() -> str:
    return resources.files("emo_cli.manifest").joinpath("starter.yaml").read_text(encoding="utf-8")


def write_starter(directory: Path | str, force: bool = False) -> list[Path]:
    """Write `manifest.yaml` and `emo-manifest.schema.json` into `directory` (created if needed).

    Raises:
        UsageError: one of the files exists and `force` is false; nothing is written then.
    """
    directory = Path(directory)
    targets = {
        directory / MANIFEST_FILENAME: starter_text(),
        directory / SCHEMA_FILENAME: json.dumps(effective_schema(), indent=2) + "\n",
    }
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        names = ", ".join(str(path) for path in existing)
        raise UsageError(
            f"{names} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite"
        )
    for path, text in targets.items():
        atomic_write_text(path, text)
    return list(targets)
