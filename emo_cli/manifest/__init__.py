"""Manifests: YAML files that say which portraits speak which audio, and how to render them.

load_manifest(path) -> Manifest          parse and check; ManifestError lists every problem
validate_manifest(path) -> [Problem]     all of load_manifest's and planning's problems
effective_schema() -> dict               JSON Schema with each installed backend's options
"""

from __future__ import annotations

from pathlib import Path

from emo_cli.errors import ManifestError, Problem
from emo_cli.manifest.loader import check_manifest, load_manifest
from emo_cli.manifest.model import JobSpec, Manifest, SourceSpec, merge_settings
from emo_cli.manifest.schema import MANIFEST_VERSION, SCHEMA_FILENAME, base_schema, effective_schema

__all__ = [
    "MANIFEST_VERSION",
    "SCHEMA_FILENAME",
    "JobSpec",
    "Manifest",
    "SourceSpec",
    "base_schema",
    "check_manifest",
    "effective_schema",
    "load_manifest",
    "merge_settings",
    "validate_manifest",
]


def validate_manifest(path: Path | str) -> list[Problem]:
    """Every problem that would stop `emo render` before it starts; [] if there is none.

    Runs the manifest checks and then planning (hashing inputs, job ids, outputs that collide
    only once ids are known), without rendering or writing anything.
    """
    from emo_cli.planning import make_plan

    try:
        make_plan(load_manifest(path))
    except ManifestError as exc:
        return exc.problems
    return []
