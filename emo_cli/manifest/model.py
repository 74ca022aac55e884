"""The parsed manifest: the document, where each part was written, and its jobs expanded.

Accessors are tolerant of a document that failed the schema (they skip what is malformed), so
the checks can keep going and report every problem at once.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from emo_cli.errors import Problem
from emo_cli.manifest.document import Document, JsonPath, format_path
from emo_cli.manifest.schema import builtin_default, builtin_settings
from emo_cli.manifest.signing import SigningFiles


@dataclass(frozen=True)
class SourceSpec:
    """A portrait or audio entry: its name, absolute path, and where it is written."""

    kind: str  # "portraits" or "audio"
    name: str
    path: Path
    where: JsonPath  # the path string's node: ("portraits", "anna") or ("portraits", "anna", "path")
    extra: Mapping[str, Any]  # everything but the path, e.g. consent

    @property
    def field(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass(frozen=True)
class JobSpec:
    """One job as the manifest states it, before files are hashed."""

    name: str  # "anna/fr"
    field: str  # "jobs[2]" or "matrix[anna,fr]"
    where: JsonPath  # ("jobs", 2) or ("matrix",)
    portrait: str
    audio: str
    settings: Mapping[str, Any]  # built-ins < defaults < matrix/job settings, deep-merged
    output: str  # template
    output_where: JsonPath  # where the template is written (or () for the built-in one)


@dataclass(frozen=True)
class Manifest:
    path: Path  # absolute
    display: str  # the path as the user gave it, for messages
    document: Document

    @property
    def data(self) -> Mapping[str, Any]:
        return self.document.data if isinstance(self.document.data, dict) else {}

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def problem(self, where: JsonPath, message: str, at_key: bool = False) -> Problem:
        position = self.document.position(where, key=at_key)
        line, col = position if position else (None, None)
        return Problem(self.display, line, col, format_path(where), message)

    @property
    def output_dir(self) -> Path:
        value = self.data.get("output_dir")
        value = value if isinstance(value, str) and value else builtin_default("output_dir")
        return _resolved(self.base_dir / value)

    @property
    def policy(self) -> dict[str, Any]:
        policy = self.data.get("policy")
        policy = policy if isinstance(policy, dict) else {}
        return {key: policy[key] if isinstance(policy.get(key), bool) else False
                for key in ("require_consent", "overwrite")}  # fmt: skip

    @property
    def signing(self) -> SigningFiles | None:
        """The `signing:` key and certificate files, resolved against the manifest's folder."""
        section = self.data.get("signing")
        if not isinstance(section, dict):
            return None
        key, certs = section.get("key"), section.get("certs")
        if not (isinstance(key, str) and key and isinstance(certs, str) and certs):
            return None
        return SigningFiles(
            key=_resolved(self.base_dir / key), certs=_resolved(self.base_dir / certs), origin="signing"
        )

    @cached_property
    def portraits(self) -> dict[str, SourceSpec]:
        return self._sources("portraits")

    @cached_property
    def audio(self) -> dict[str, SourceSpec]:
        return self._sources("audio")

    def _sources(self, kind: str) -> dict[str, SourceSpec]:
        section = self.data.get(kind)
        out: dict[str, SourceSpec] = {}
        if not isinstance(section, dict):
            return out
        for name, value in section.items():
            if isinstance(value, str) and value:
                out[name] = SourceSpec(kind, name, _resolved(self.base_dir / value), (kind, name), {})
            elif isinstance(value, dict) and isinstance(value.get("path"), str) and value["path"]:
                extra = {k: copy.deepcopy(v) for k, v in value.items() if k != "path"}
                out[name] = SourceSpec(
                    kind, name, _resolved(self.base_dir / value["path"]), (kind, name, "path"), extra
                )
        return out

    @cached_property
    def jobs(self) -> tuple[JobSpec, ...]:
        """Jobs in a fixed order: the `jobs:` list as written, then the matrix, portrait-major."""
        data = self.data
        base = merge_settings(builtin_settings(), _mapping(data.get("defaults")))
        top_output, top_where = _template(data, ("output",), builtin_default("output"), ())
        specs: list[JobSpec] = []
        jobs = data.get("jobs")
        for index, job in enumerate(jobs if isinstance(jobs, list) else []):
            if not isinstance(job, dict):
                continue
            portrait, audio = job.get("portrait"), job.get("audio")
            if not (isinstance(portrait, str) and isinstance(audio, str)):
                continue
            output, output_where = _template(job, ("jobs", index, "output"), top_output, top_where)
            specs.append(
                JobSpec(
                    name=f"{portrait}/{audio}",
                    field=f"jobs[{index}]",
                    where=("jobs", index),
                    portrait=portrait,
                    audio=audio,
                    settings=merge_settings(base, _mapping(job.get("settings"))),
                    output=output,
                    output_where=output_where,
                )
            )
        matrix = data.get("matrix")
        if isinstance(matrix, dict):
            settings = merge_settings(base, _mapping(matrix.get("settings")))
            output, output_where = _template(matrix, ("matrix", "output"), top_output, top_where)
            for portrait in _names(matrix.get("portraits")):
                for audio in _names(matrix.get("audio")):
                    specs.append(
                        JobSpec(
                            name=f"{portrait}/{audio}",
                            field=f"matrix[{portrait},{audio}]",
                            where=("matrix",),
                            portrait=portrait,
                            audio=audio,
                            settings=settings,
                            output=output,
                            output_where=output_where,
                        )
                    )
        return tuple(specs)


def _resolved(path: Path) -> Path:
    """`path` made absolute with symlinks resolved; a symlink loop is left for the file checks
    to report (Path.resolve raises RuntimeError on one before Python 3.13, OSError after)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def merge_settings(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`; mappings (backend option sections) merge key by key."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(v for v in value if isinstance(v, str)))


def _template(
    owner: Mapping[str, Any], where: JsonPath, fallback: str, fallback_where: JsonPath
) -> tuple[str, JsonPath]:
    value = owner.get("output")
    if isinstance(value, str) and value:
        return value, where
    return fallback, fallback_where
