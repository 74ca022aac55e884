"""Output templates: `{portrait}/{audio}.mp4` under output_dir. The one place that renders them.

Fields: `{portrait}` and `{audio}` (the names in the manifest), `{backend}`, `{job}` (the job's
content id, 16 hex digits) and `{settings}` (8 hex digits of the settings, backend version and
weights, without the inputs: `{portrait}/{audio}-{settings}.mp4` keeps each revision's file).
"""

from __future__ import annotations

import posixpath
import string

from emo_cli.media.formats import output_suffixes

TEMPLATE_FIELDS = ("portrait", "audio", "job", "backend", "settings")
# Stand-in for {job} when checking a template before job ids exist (same length, hex).
_JOB_PLACEHOLDER = "0" * 16


def template_problems(template: str) -> list[str]:
    """What is wrong with a template on its own: syntax, unknown fields, escaping output_dir."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return [
            f"output template {template!r} has an unmatched '{{' or '}}' (write '{{{{' for a literal brace)"
        ]
    problems = []
    known = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            shown = "{" + name + "}" if name else "{}"
            problems.append(f"unknown field {shown} in output template (known fields: {known})")
        elif spec or conversion:
            problems.append(f"field {{{name}}} in output template takes no format spec or conversion")
    if problems:
        return problems
    rendered = render_output(
        template, portrait="portrait", audio="audio", job=_JOB_PLACEHOLDER, backend="backend",
        settings=_JOB_PLACEHOLDER[:8],
    )  # fmt: skip
    problems.extend(output_path_problems(rendered))
    return problems


def output_path_problems(rendered: str) -> list[str]:
    """Problems of a rendered output path, relative to output_dir."""
    if rendered.startswith(("/", "\\")) or (rendered[:1].isalpha() and rendered[1:3] in (":/", ":\\")):
        return [f"output {rendered!r} is absolute; it must be a path under output_dir"]
    normal = posixpath.normpath(rendered.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        return [f"output {rendered!r} escapes output_dir; remove the '..'"]
    if normal == "." or rendered.endswith("/"):
        return [f"output {rendered!r} names a folder, not a file"]
    suffixes = output_suffixes()
    if not normal.lower().endswith(tuple(suffixes)):
        return [f"output {rendered!r} must end in {' or '.join(suffixes)} (the output format)"]
    return []


def render_output(template: str, *, portrait: str, audio: str, job: str, backend: str, settings: str = "") -> str:
    """The output path (relative to output_dir, normalised, '/'-separated) for one job."""
    rendered = template.format(portrait=portrait, audio=audio, job=job, backend=backend, settings=settings)
    return posixpath.normpath(rendered.replace("\\", "/"))


def uses_job_id(template: str) -> bool:
    """Whether the template depends on what only planning knows (`{job}` or `{settings}`)."""
    return any(name in ("job", "settings") for _, name, _, _ in string.Formatter().parse(template))


def duplicate_output(field: str, rendered: str, other_field: str, same_job: bool = False) -> str:
    """The sentence for two jobs that would write one file."""
    twice = " (the same job twice)" if same_job else ""
    return f"{field} renders to {rendered!r} under output_dir, like {other_field}{twice}; give one of them its own output:"
