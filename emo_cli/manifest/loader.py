"""load_manifest: read, check everything, and report every problem at once.

Checks, in one pass: YAML syntax and duplicate keys; the effective JSON Schema (unknown keys,
types, values, version, each backend's options); names used by jobs but not defined; portrait
and audio files that are missing or undecodable; output templates (fields, escaping
output_dir); two jobs rendering to one file; unknown or broken backends; the consent policy.
Nothing is rendered or written.
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import os
from collections.abc import Iterable
from pathlib import Path

from emo_cli.backends.registry import DEFAULT_BACKEND, get_backend_class
from emo_cli.errors import BackendError, InputError, ManifestError, Problem
from emo_cli.fsutil import NotRegularFileError, open_regular_file
from emo_cli.manifest.confinement import confinement_problems, confinement_root
from emo_cli.manifest.document import Document, JsonPath, format_path, parse_document
from emo_cli.manifest.model import JobSpec, Manifest
from emo_cli.manifest.schema import effective_schema, schema_issues
from emo_cli.manifest.template import duplicate_output, render_output, template_problems, uses_job_id

# A bound on what is read and parsed: 10,000 jobs take about 230 KB, so this is ~700,000 jobs.
MAX_MANIFEST_BYTES = 16 << 20


def load_manifest(path: Path | str) -> Manifest:
    """Parse and check a manifest.

    Raises:
        ManifestError: with every problem found, each at file:line:col and a JSON path.
    """
    display = os.fspath(path)
    path = Path(path)
    try:
        with open_regular_file(path) as stream:
            raw = stream.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            message = f"is larger than {MAX_MANIFEST_BYTES >> 20} MiB; split it into several manifests"
            raise ManifestError([Problem(display, None, None, "", message)])
        text = _decode(raw)
    except FileNotFoundError:
        raise ManifestError([Problem(display, None, None, "", "manifest not found")]) from None
    except NotRegularFileError as exc:
        raise ManifestError(
            [Problem(display, None, None, "", f"is {exc.kind}, not a manifest file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([Problem(display, None, None, "", f"cannot be read ({exc})")]) from None
    document = parse_document(text, text_at=_is_name_or_path)
    manifest = Manifest(path=path.resolve(), display=display, document=document)
    problems = check_manifest(manifest)
    if problems:
        raise ManifestError(problems)
    return manifest


def _decode(raw: bytes) -> str:
    """YAML's encodings: UTF-8 (with or without a byte order mark), UTF-16 or UTF-32 with one."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if raw.startswith(bom):
            return raw.decode(codec)
    return raw.decode("utf-8-sig")


def _is_name_or_path(path: JsonPath) -> bool:
    """Values read as their written text, never as YAML numbers or booleans: the names of
    portraits and audio tracks where jobs use them, file paths and output templates."""
    match path:
        case ("jobs", int(), "portrait" | "audio" | "output") | ("matrix", "portraits" | "audio", int()):
            return True
        case ("portraits" | "audio", str()) | ("portraits" | "audio", str(), "path"):
            return True
        case ("output_dir",) | ("output",) | ("matrix", "output") | ("signing", "key" | "certs"):
            return True
    return False


def check_manifest(manifest: Manifest) -> list[Problem]:
    """Every problem in an already parsed manifest, sorted by position."""
    document: Document = manifest.document
    problems = [
        Problem(manifest.display, *issue.position, format_path(issue.path), issue.message)
        if issue.position
        else manifest.problem(issue.path, issue.message)
        for issue in document.issues
    ]
    if document.data is None:
        if not document.issues:
            problems.append(
                manifest.problem(
                    (), "the manifest is empty; start it with `version: 1` (`emo init` writes a starter)"
                )
            )
        return _sorted(problems)
    for issue in schema_issues(document.data, effective_schema()):
        problems.append(manifest.problem(issue.path, issue.message, at_key=issue.at_key))
    if not isinstance(document.data, dict):
        return _sorted(problems)
    problems += _check_jobs_exist(manifest)
    problems += _check_backends(manifest)
    root = confinement_root()
    if root is not None:
        confined = confinement_problems(manifest, root)
        if confined:  # refused before any input is opened
            return _sorted(problems + confined)
    problems += _check_sources(manifest)
    problems += _check_outputs(manifest)
    problems += _check_consent(manifest)
    problems += _check_signing(manifest)
    return _sorted(problems)


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.col or 0, p.path))


def _check_jobs_exist(manifest: Manifest) -> list[Problem]:
    data = manifest.data
    if manifest.jobs or "matrix" in data or (isinstance(data.get("jobs"), list) and data["jobs"]):
        return []
    return [manifest.problem((), "no jobs: add a `jobs:` list or a `matrix:`")]


def _written(data: object, path: JsonPath) -> object:
    for part in path:
        if isinstance(part, int):
            if not (isinstance(data, list) and 0 <= part < len(data)):
                return None
            data = data[part]
        else:
            if not isinstance(data, dict) or part not in data:
                return None
            data = data[part]
    return data


def _backend_where(manifest: Manifest, spec: JobSpec) -> JsonPath:
    """Where a job's backend is chosen: its own settings, the defaults, or the built-in default (())."""
    for where in ((*spec.where, "settings", "backend"), ("defaults", "backend")):
        if isinstance(_written(manifest.data, where), str):
            return where
    return ()


def _check_backends(manifest: Manifest) -> list[Problem]:
    data = manifest.data
    wheres: list[JsonPath] = [("defaults", "backend"), ("matrix", "settings", "backend")]
    jobs = data.get("jobs")
    wheres += [("jobs", i, "settings", "backend") for i in range(len(jobs) if isinstance(jobs, list) else 0)]
    wheres += [_backend_where(manifest, spec) for spec in manifest.jobs]
    problems = []
    for where in dict.fromkeys(wheres):
        name = _written(data, where) if where else DEFAULT_BACKEND
        if not isinstance(name, str) or not name:
            continue
        try:
            get_backend_class(name)
        except BackendError as exc:
            hint = "" if where else " (the built-in default; choose another with defaults.backend)"
            problems.append(manifest.problem(where, f"{exc}{hint}"))
    return problems


def _reference_where(spec: JobSpec, kind: str, name: str, data: dict) -> JsonPath:
    if spec.where[0] == "jobs":
        return (*spec.where, "portrait" if kind == "portraits" else "audio")
    names = _written(data, ("matrix", kind))
    index = names.index(name) if isinstance(names, list) and name in names else None
    return ("matrix", kind) if index is None else ("matrix", kind, index)


def _check_sources(manifest: Manifest) -> list[Problem]:
    """Names jobs use must be defined; every defined file must open (a typo in an unused entry
    is still a typo, and it is cheaper to hear about it now than in the middle of a batch)."""
    problems = []
    for spec in manifest.jobs:
        for kind, name, defined in (
            ("portraits", spec.portrait, manifest.portraits),
            ("audio", spec.audio, manifest.audio),
        ):
            section = manifest.data.get(kind)
            if name in defined or (isinstance(section, dict) and name in section):
                continue  # defined (if malformed, the schema has said so)
            close = difflib.get_close_matches(name, list(defined), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = _reference_where(spec, kind, name, manifest.data)
            problems.append(manifest.problem(where, f"{name!r} is not defined under {kind}:{hint}"))
    from emo_cli.media.image import portrait_size
    from emo_cli.media.probe import audio_duration

    for check, sources in ((portrait_size, manifest.portraits), (audio_duration, manifest.audio)):
        for source in sources.values():
            try:
                check(source.path)
            except InputError as exc:
                problems.append(manifest.problem(source.where, str(exc)))
    return problems


def _check_outputs(manifest: Manifest) -> list[Problem]:
    problems = []
    bad_templates: set[str] = set()
    templates = {(spec.output_where, spec.output) for spec in manifest.jobs}
    for where, template in sorted(templates, key=lambda t: tuple(map(str, t[0]))):
        found = template_problems(template)
        if found:
            bad_templates.add(template)
            problems += [manifest.problem(where, message) for message in found]
    # Outputs that depend on the job id can only collide for identical jobs; planning checks those.
    first: dict[str, JobSpec] = {}
    for spec in manifest.jobs:
        if spec.output in bad_templates or uses_job_id(spec.output):
            continue
        backend = spec.settings.get("backend")
        rendered = render_output(
            spec.output, portrait=spec.portrait, audio=spec.audio, job="", backend=str(backend)
        )
        if rendered in first:
            other = first[rendered]
            problems.append(manifest.problem(spec.where, duplicate_output(spec.field, rendered, other.field)))
        else:
            first[rendered] = spec
    return problems


def _check_consent(manifest: Manifest) -> list[Problem]:
    if not manifest.policy["require_consent"]:
        return []
    problems = []
    today = dt.date.today()
    for spec in manifest.jobs:
        source = manifest.portraits.get(spec.portrait)
        if source is None:
            continue
        consent = source.extra.get("consent")
        if not isinstance(consent, dict):
            problems.append(
                manifest.problem(
                    spec.where,
                    f"portrait {spec.portrait!r} has no consent record and policy.require_consent is true; "
                    f"add consent: {{reference, subject, expires}} under portraits.{spec.portrait}",
                )
            )
            continue
        expires = consent.get("expires")
        try:
            expiry = dt.date.fromisoformat(expires) if isinstance(expires, str) else None
        except ValueError:
            continue  # the schema reports the malformed date
        if expiry is not None and expiry < today:
            problems.append(
                manifest.problem(
                    spec.where,
                    f"consent for portrait {spec.portrait!r} expired on {expiry.isoformat()} "
                    "and policy.require_consent is true",
                )
            )
    return problems


def _check_signing(manifest: Manifest) -> list[Problem]:
    """The signing files must be readable PEM files (their contents are checked when signing)."""
    signing = manifest.signing
    if signing is None:
        return []
    problems = []
    for name, path in (("key", signing.key), ("certs", signing.certs)):
        try:
            with open_regular_file(path) as stream:
                head = stream.read(4096)
        except OSError as exc:
            reason = (
                "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
            )
            problems.append(manifest.problem(("signing", name), f"{path} {reason}"))
            continue
        if b"-----BEGIN " not in head:
            problems.append(manifest.problem(("signing", name), f"{path} is not a PEM file"))
    return problems
