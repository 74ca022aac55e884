"""make_plan: a checked manifest -> jobs with effective settings, hashed inputs and ids."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emo_cli.backends.base import Backend, OptionProblem
from emo_cli.backends.registry import get_backend_class
from emo_cli.errors import BackendError, ManifestError, Problem
from emo_cli.fsutil import sha256_file
from emo_cli.manifest import JobSpec, Manifest, SourceSpec, load_manifest
from emo_cli.manifest.document import format_path
from emo_cli.manifest.template import duplicate_output, render_output
from emo_cli.media.formats import format_for
from emo_cli.media.probe import audio_duration
from emo_cli.planning.fingerprint import job_id, settings_id
from emo_cli.planning.job import Job, Plan, Settings, Source
from emo_cli.planning.outputs import OutputChecks


def make_plan(manifest: Manifest) -> Plan:
    """Every job of `manifest` (as returned by `load_manifest`), in manifest order, ready to render.

    Effective settings are built-in defaults < `defaults:` < matrix or job settings (backend
    sections merged key by key), then the backend fills in its option defaults.

    Raises:
        ManifestError: a backend cannot describe its weights, or two jobs share an output.
        InputError: an input changed since the manifest was checked and no longer decodes.
    """
    output_dir = manifest.output_dir
    hashes: dict[Path, str] = {}
    jobs: list[Job] = []
    problems: list[Problem] = []
    first_by_output: dict[Path, Job] = {}
    outputs = OutputChecks(output_dir, _inputs(manifest))
    for spec in manifest.jobs:
        name = str(spec.settings["backend"])
        cls = get_backend_class(name)
        settings = _settings(name, cls, spec.settings, manifest.base_dir, format_for(spec.output).name)
        try:
            weights = cls.weights_identity(settings.options)
        except BackendError as exc:
            # The problem's JSON path already names a job of `jobs:`; a matrix job says which pair.
            prefix = "" if spec.field == format_path(spec.where) else f"{spec.field}: "
            problems.append(manifest.problem(spec.where, f"{prefix}{exc}"))
            continue
        options_problems = cls.check_options(settings.options)
        if options_problems:
            problems += [_option_problem(manifest, spec, name, p) for p in options_problems]
            continue
        portrait = _source(manifest.portraits[spec.portrait], hashes)
        audio = _source(manifest.audio[spec.audio], hashes)
        identity = job_id(
            portrait_sha256=portrait.sha256,
            audio_sha256=audio.sha256,
            settings=settings,
            backend_version=cls.version,
            weights_identity=weights,
        )
        relative = render_output(
            spec.output, portrait=spec.portrait, audio=spec.audio, job=identity, backend=name,
            settings=settings_id(settings, cls.version, weights),
        )  # fmt: skip
        job = Job(
            id=identity,
            name=spec.name,
            portrait=portrait,
            audio=audio,
            settings=settings,
            output=output_dir / relative,
            output_dir=output_dir,
            manifest=manifest.path,
            field=spec.field,
            duration=audio_duration(audio.path),
            backend_version=cls.version,
            weights_identity=weights,
            signing=manifest.signing,
        )
        placement = outputs.problems(job.output)
        if placement:
            where = spec.output_where or spec.where
            own = where[: len(spec.where)] == spec.where and spec.field == format_path(spec.where)
            problems += [manifest.problem(where, ("" if own else f"{spec.field}: ") + p) for p in placement]
            continue
        if job.output in first_by_output:
            other = first_by_output[job.output]
            problems.append(
                manifest.problem(
                    spec.where, duplicate_output(spec.field, relative, other.field, other.id == job.id)
                )
            )
            continue
        first_by_output[job.output] = job
        jobs.append(job)
    if problems:
        raise ManifestError(list(dict.fromkeys(problems)))
    return Plan(manifest=manifest.path, output_dir=output_dir, jobs=tuple(jobs), policy=manifest.policy)


def _inputs(manifest: Manifest) -> dict[Path, str]:
    """Every file the manifest reads, resolved, by the field that names it: no output may be one."""
    inputs = {manifest.path: "the manifest itself"}
    for sources in (manifest.portraits, manifest.audio):
        for source in sources.values():
            inputs.setdefault(source.path, source.field)
    signing = manifest.signing
    if signing is not None:
        inputs.setdefault(signing.key, "signing.key")
        inputs.setdefault(signing.certs, "signing.certs")
    return inputs


def plan_manifest(path: Path | str) -> Plan:
    """load_manifest then make_plan: what `emo plan`, `emo status` and `emo render` start from."""
    return make_plan(load_manifest(path))


def _settings(name: str, cls: type[Backend], raw: Mapping[str, Any], base_dir: Path, fmt: str) -> Settings:
    section = raw.get(name)
    provenance = raw.get("provenance")
    provenance = provenance if isinstance(provenance, Mapping) else {}
    return Settings(
        backend=name,
        fps=int(raw["fps"]),
        resolution=int(raw["resolution"]),
        seed=int(raw["seed"]),
        chunk_frames=int(raw["chunk_frames"]),
        options=cls.resolve_paths(cls.resolve_options(section if isinstance(section, Mapping) else None), base_dir),
        watermark=bool(provenance.get("watermark", True)),
        sign=bool(provenance.get("sign", True)),
        format=fmt,
        qc=dict(raw["qc"]) if isinstance(raw.get("qc"), Mapping) else {},
    )


def _option_problem(manifest: Manifest, spec: JobSpec, backend: str, problem: OptionProblem) -> Problem:
    """`problem` at the option where the job's settings set it (the job's own settings, the
    matrix's, then `defaults:`), else at the job."""
    candidates: list[tuple[Any, ...]] = [("defaults", backend, problem.option)]
    if spec.where[:1] == ("jobs",):
        candidates.insert(0, (*spec.where, "settings", backend, problem.option))
    elif spec.where[:1] == ("matrix",):
        candidates.insert(0, ("matrix", "settings", backend, problem.option))
    where = next((c for c in candidates if _written(manifest.data, c)), spec.where)
    # At the job's own entry the path names the job; at shared settings, say which job.
    own = where[: len(spec.where)] == spec.where and spec.field == format_path(spec.where)
    return manifest.problem(where, ("" if own else f"{spec.field}: ") + problem.message)


def _written(data: Any, path: tuple[Any, ...]) -> bool:
    """Whether the manifest's document holds a value at `path`."""
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _source(spec: SourceSpec, hashes: dict[Path, str]) -> Source:
    if spec.path not in hashes:
        hashes[spec.path] = sha256_file(spec.path)
    return Source(
        name=spec.name, path=spec.path, sha256=hashes[spec.path], field=spec.field, extra=dict(spec.extra)
    )
