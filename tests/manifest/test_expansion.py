"""Job expansion, settings merging and output templates."""

from __future__ import annotations

import pytest

from emo_cli.errors import ManifestError
from emo_cli.manifest import load_manifest
from emo_cli.manifest.template import render_output, template_problems

SOURCES = """
version: 1
defaults:
  backend: fixture
  fps: 30
  fixture: {gain: 2.0, mode: lively}
portraits:
  a: astronaut.jpg
  b: {path: astronaut.jpg}
audio:
  en: hello_en.wav
  fr: hello_fr.wav
  es: hello_es.wav
"""


def test_jobs_come_first_then_the_matrix_portrait_major(fixture_backend, write_manifest):
    manifest = load_manifest(
        write_manifest(
            SOURCES
            + """\
jobs:
  - {portrait: b, audio: es, output: "single/{portrait}-{audio}.mp4"}
matrix:
  portraits: [b, a]
  audio: [fr, en]
"""
        )
    )
    assert [(job.name, job.field, job.where) for job in manifest.jobs] == [
        ("b/es", "jobs[0]", ("jobs", 0)),
        ("b/fr", "matrix[b,fr]", ("matrix",)),
        ("b/en", "matrix[b,en]", ("matrix",)),
        ("a/fr", "matrix[a,fr]", ("matrix",)),
        ("a/en", "matrix[a,en]", ("matrix",)),
    ]
    assert manifest.jobs[0].output == "single/{portrait}-{audio}.mp4"
    assert manifest.jobs[1].output == "{portrait}/{audio}.mp4"


def test_settings_layer_builtins_defaults_then_overrides(fixture_backend, write_manifest):
    manifest = load_manifest(
        write_manifest(
            SOURCES
            + """\
jobs:
  - {portrait: a, audio: en, settings: {seed: 7, fixture: {gain: 0.5}}}
matrix:
  portraits: [b]
  audio: [fr]
  settings: {resolution: 256, fixture: {mode: calm}}
"""
        )
    )
    job, cell = manifest.jobs
    assert job.settings == {
        "backend": "fixture",
        "fps": 30,
        "resolution": 512,
        "seed": 7,
        "chunk_frames": 50,
        "provenance": {"watermark": True, "sign": True},
        "qc": {"enabled": True, "on_fail": "warn", "retries": 2, "sample_frames": 3, "video": True},
        "fixture": {"gain": 0.5, "mode": "lively"},
    }
    assert cell.settings["resolution"] == 256
    assert cell.settings["seed"] == 0
    assert cell.settings["fixture"] == {"gain": 2.0, "mode": "calm"}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("../x.mp4", "output '../x.mp4' escapes output_dir; remove the '..'"),
        ("{portrait}/../../x.mp4", "output '../x.mp4' escapes output_dir; remove the '..'"),
        ("/abs.mp4", "output '/abs.mp4' is absolute; it must be a path under output_dir"),
        (
            "{voice}.mp4",
            "unknown field {voice} in output template (known fields: {portrait}, {audio}, {job}, {backend}, {settings})",
        ),
        (
            "{portrait.mp4",
            "output template '{portrait.mp4' has an unmatched '{' or '}' (write '{{' for a literal brace)",
        ),
        ("{job:.8}.mp4", "field {job} in output template takes no format spec or conversion"),
        ("{portrait}/{audio}.mov", "output 'portrait/audio.mov' must end in .mp4 or .webm (the output format)"),
    ],
)
def test_bad_templates(template, message):
    assert template_problems(template) == [message]


def test_good_templates_render_under_output_dir():
    for template in (
        "{portrait}/{audio}.mp4",
        "{backend}/{job}.mp4",
        "x/./{audio}-{job}.mp4",
        "{{literal}}.mp4",
    ):
        assert template_problems(template) == []
    path = render_output(
        "x/./{backend}/{portrait}-{audio}-{job}.mp4", portrait="a", audio="en", job="f00d", backend="warp"
    )
    assert path == "x/warp/a-en-f00d.mp4"


def test_template_problems_are_reported_where_written(fixture_backend, write_manifest):
    path = write_manifest(
        SOURCES
        + """\
output: "/videos/{portrait}.mp4"
jobs:
  - {portrait: a, audio: en, output: "{lang}.mp4"}
  - {portrait: a, audio: fr}
"""
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert [(p.line, p.col, p.path) for p in info.value.problems] == [
        (13, 9, "output"),
        (15, 38, "jobs[0].output"),
    ]


def test_duplicate_outputs_are_rejected(fixture_backend, write_manifest):
    path = write_manifest(
        SOURCES
        + """\
output: "{portrait}.mp4"
jobs:
  - {portrait: a, audio: en}
  - {portrait: a, audio: en, settings: {seed: 1}, output: "a-seed1.mp4"}
matrix:
  portraits: [a]
  audio: [fr]
"""
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    [problem] = info.value.problems
    assert (problem.line, problem.path) == (18, "matrix")
    assert (
        problem.message
        == "matrix[a,fr] renders to 'a.mp4' under output_dir, like jobs[0]; give one of them its own output:"
    )


def test_identical_jobs_collide_even_with_job_ids_in_the_template(fixture_backend, write_manifest):
    from emo_cli.api import validate_manifest

    path = write_manifest(
        SOURCES
        + """\
output: "{job}.mp4"
jobs:
  - {portrait: a, audio: en}
  - {portrait: b, audio: en}
  - {portrait: a, audio: en, settings: {seed: 4}}
"""
    )
    [problem] = validate_manifest(path)
    assert (problem.line, problem.path) == (16, "jobs[1]")
    assert "(the same job twice)" in problem.message
