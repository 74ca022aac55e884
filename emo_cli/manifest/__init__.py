"""Manifests: YAML files that say which portraits speak which audio, and how to render them.

load_manifest(path) -> Manifest          parse and check; ManifestError lists every problem
effective_schema() -> dict               JSON Schema with each installed backend's options

Planning problems (hashing inputs, ids, outputs that collide once ids are known) come on top:
`emo_cli.api.validate_manifest` reports both. The names load on first use, so importing a
small module of this package (`emo_cli.manifest.signing`) does not load YAML or jsonschema.
"""

from __future__ import annotations

from emo_cli.lazy import lazy_attributes

_HOMES = {
    "check_manifest": "loader",
    "load_manifest": "loader",
    "JobSpec": "model",
    "Manifest": "model",
    "SourceSpec": "model",
    "merge_settings": "model",
    "MANIFEST_VERSION": "schema",
    "SCHEMA_FILENAME": "schema",
    "base_schema": "schema",
    "effective_schema": "schema",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_attributes(__name__, _HOMES)
