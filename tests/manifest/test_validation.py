"""Manifest checks: each problem as file:line:col path: sentence, all of them at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from emo_cli.api import load_manifest, validate_manifest
from emo_cli.errors import ManifestError, Problem

VALID = """
version: 1
defaults:
  backend: fixture
portraits:
  astronaut: astronaut.jpg
audio:
  en: hello_en.wav
jobs:
  - portrait: astronaut
    audio: en
"""


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value.problems


def where(problem: Problem) -> tuple[int | None, int | None, str]:
    return problem.line, problem.col, problem.path


def test_valid_manifest_loads(fixture_backend, write_manifest):
    manifest = load_manifest(write_manifest(VALID))
    assert [job.name for job in manifest.jobs] == ["astronaut/en"]
    assert validate_manifest(manifest.path) == []


def test_unknown_key_points_at_the_key_and_suggests_the_right_one(fixture_backend, write_manifest):
    path = write_manifest(
        """
        version: 1
        defaults:
          backend: fixture
          fsp: 30
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav}
        jobs: [{portrait: astronaut, audio: en}]
        """
    )
    [problem] = problems_of(path)
    assert where(problem) == (4, 3, "defaults.fsp")
    assert problem.message == "unknown key 'fsp' (did you mean 'fps'?)"
    assert str(problem) == f"{path}:4:3 defaults.fsp: unknown key 'fsp' (did you mean 'fps'?)"


def test_consent_belongs_to_portraits_and_is_an_error_under_audio(fixture_backend, write_manifest):
    path = write_manifest(
        """
        version: 1
        defaults: {backend: fixture}
        portraits:
          astronaut: {path: astronaut.jpg, consent: {reference: R-1, subject: the astronaut}}
        audio:
          en: {path: hello_en.wav, consent: {reference: R-2, subject: the speaker}}
        jobs: [{portrait: astronaut, audio: en}]
        """
    )
    [problem] = problems_of(path)
    assert problem.path == "audio.en.consent"
    assert problem.message == "unknown key 'consent' (allowed: path)"


def test_wrong_types_and_bad_values_point_at_the_value(fixture_backend, write_manifest):
    path = write_manifest(
        """
        version: 1
        defaults:
          backend: fixture
          fps: 25fps
          resolution: 500
          seed: -1
          chunk_frames: true
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav}
        jobs: [{portrait: astronaut, audio: en}]
        """
    )
    got = {where(p): p.message for p in problems_of(path)}
    assert got == {
        (4, 8, "defaults.fps"): "expected an integer, got a string ('25fps')",
        (5, 15, "defaults.resolution"): "must be a multiple of 8, got 500",
        (6, 9, "defaults.seed"): "must be at least 0, got -1",
        (7, 17, "defaults.chunk_frames"): "expected an integer, got a boolean (true)",
    }


def test_version_missing_or_unsupported(fixture_backend, write_manifest):
    body = VALID.replace("version: 1\n", "")
    [missing] = problems_of(write_manifest(body, "a.yaml"))
    assert where(missing)[2] == "" and "missing required key 'version'" in missing.message
    [wrong] = problems_of(write_manifest(VALID.replace("version: 1", "version: 2"), "b.yaml"))
    assert where(wrong) == (1, 10, "version")
    assert wrong.message == "unsupported manifest version 2; this emo-cli reads version 1"


def test_yaml_syntax_error_reports_its_line(write_manifest):
    path = write_manifest("version: 1\nportraits:\n  a: [x.jpg\naudio: {}\n")
    [problem] = problems_of(path)
    assert (problem.line, problem.col) == (4, 6)
    assert (
        problem.message
        == "YAML syntax error: while parsing a flow sequence (line 3), expected ',' or ']', but got ':'"
    )
    [tab] = problems_of(write_manifest("version: 1\ndefaults:\n\tfps: 3\n", "tab.yaml"))
    assert (tab.line, tab.message) == (
        3,
        "YAML syntax error: while scanning for the next token, found character '\\t' that cannot start any token",
    )


def test_infinite_numbers_are_refused(fixture_backend, write_manifest):
    path = write_manifest(VALID.replace("  backend: fixture", "  backend: fixture\n  fixture: {gain: .inf}"))
    [problem] = problems_of(path)
    assert (problem.line, problem.col, problem.path) == (4, 19, "defaults.fixture.gain")
    assert problem.message == ".inf is not a finite number"


def test_duplicate_keys_are_reported_not_silently_merged(fixture_backend, write_manifest):
    path = write_manifest(VALID + "portraits:\n  other: astronaut.jpg\n")
    [problem] = problems_of(path)
    assert where(problem) == (11, 1, "portraits")
    assert problem.message == "duplicate key 'portraits' (first written on line 4)"


def test_backend_options_are_checked_by_that_backends_schema(fixture_backend, write_manifest):
    path = write_manifest(
        VALID
        + """\
  - portrait: astronaut
    audio: en
    output: second.mp4
    settings:
      fixture: {gain: -1, mode: wild, colour: red}
"""
    )
    got = {where(p): p.message for p in problems_of(path)}
    assert got == {
        (15, 23, "jobs[1].settings.fixture.gain"): "must be at least 0, got -1",
        (15, 33, "jobs[1].settings.fixture.mode"): "must be one of 'calm', 'lively'; got 'wild'",
        (15, 39, "jobs[1].settings.fixture.colour"): "unknown key 'colour' (allowed: gain, mode, weights)",
    }


def test_unknown_backend_and_unknown_backend_section(fixture_backend, write_manifest):
    path = write_manifest(VALID.replace("  backend: fixture", "  backend: nope\n  fixturez: {}"))
    got = {where(p): p.message for p in problems_of(path)}
    assert got[(3, 12, "defaults.backend")].startswith("unknown backend 'nope' (installed backends: ")
    assert got[(4, 3, "defaults.fixturez")] == "unknown key 'fixturez' (did you mean 'fixture'?)"
    assert len(got) == 2


def test_five_problems_give_five_lines(fixture_backend, write_manifest):
    path = write_manifest(
        """
        version: 1
        defaults: {backend: fixture, fps: 0}
        portraits:
          astronaut: astronaut.jpg
          ghost: missing.jpg
        audio:
          en: hello_en.wav
        jobs:
          - {portrait: astronaut, audio: de}
          - {portrait: ghost, audio: en}
          - {portrait: astronaut, audio: en, output: ../x.mp4}
          - {portrait: astronaut, audio: en, colour: red}
        """
    )
    problems = problems_of(path)
    assert [where(p) for p in problems] == [
        (2, 35, "defaults.fps"),
        (5, 10, "portraits.ghost"),
        (9, 34, "jobs[0].audio"),
        (11, 46, "jobs[2].output"),
        (12, 38, "jobs[3].colour"),
    ]
    assert problems[0].message == "must be at least 1, got 0"
    assert problems[1].message.endswith("missing.jpg does not exist")
    assert problems[2].message == "'de' is not defined under audio:"
    assert problems[3].message == "output '../x.mp4' escapes output_dir; remove the '..'"
    assert problems[4].message.startswith("unknown key 'colour'")
    message = str(ManifestError(problems))
    assert message.startswith("5 problems in manifest:")
    assert len(message.splitlines()) == 6


def test_undefined_names_in_the_matrix_point_at_the_list_item(fixture_backend, write_manifest):
    path = write_manifest(
        VALID.split("jobs:")[0]
        + """\
matrix:
  portraits: [astronot]
  audio: [en, fr]
"""
    )
    got = {where(p): p.message for p in problems_of(path)}
    assert got == {
        (
            9,
            15,
            "matrix.portraits[0]",
        ): "'astronot' is not defined under portraits: (did you mean 'astronaut'?)",
        (10, 15, "matrix.audio[1]"): "'fr' is not defined under audio:",
    }


def test_unreadable_inputs_name_the_file(fixture_backend, write_manifest, media_dir):
    (media_dir / "notes.jpg").write_text("not an image")
    (media_dir / "noise.wav").write_bytes(b"RIFF" + bytes(200))
    path = write_manifest(
        VALID.replace("astronaut: astronaut.jpg", "astronaut: {path: notes.jpg}").replace(
            "en: hello_en.wav", "en: noise.wav"
        )
    )
    got = {where(p): p.message for p in problems_of(path)}
    assert set(got) == {(5, 21, "portraits.astronaut.path"), (7, 7, "audio.en")}
    assert "notes.jpg is not a readable image" in got[(5, 21, "portraits.astronaut.path")]
    assert "noise.wav cannot be decoded" in got[(7, 7, "audio.en")]


def test_names_must_be_plain(fixture_backend, write_manifest):
    path = write_manifest(VALID.replace("  en: hello_en.wav", "  en: hello_en.wav\n  ../up: hello_fr.wav"))
    [problem] = problems_of(path)
    assert where(problem) == (8, 3, "audio.../up")
    assert problem.message.startswith("name '../up' may only use letters")


def test_source_entry_must_be_a_path_or_a_mapping(fixture_backend, write_manifest):
    path = write_manifest(VALID.replace("en: hello_en.wav", "en: [hello_en.wav]"))
    [problem] = problems_of(path)
    assert where(problem) == (7, 7, "audio.en")
    assert problem.message == "expected a string or a mapping, got a list"


def test_empty_manifest_and_manifest_without_jobs(write_manifest):
    [empty] = problems_of(write_manifest("# nothing yet\n", "empty.yaml"))
    assert empty.message.startswith("the manifest is empty")
    [nojobs] = problems_of(write_manifest("version: 1\n", "nojobs.yaml"))
    assert nojobs.message == "no jobs: add a `jobs:` list or a `matrix:`"


def test_missing_manifest_file(tmp_path):
    [problem] = problems_of(tmp_path / "absent.yaml")
    assert problem.message == "manifest not found"
    assert str(problem) == f"{tmp_path / 'absent.yaml'} manifest not found"


CONSENTED = """
version: 1
defaults: {backend: fixture}
policy: {require_consent: true}
portraits:
  signed:
    path: astronaut.jpg
    consent: {reference: REL-1, subject: Model A, expires: 2999-12-31}
  lapsed:
    path: astronaut.jpg
    consent: {reference: REL-2, subject: Model B, expires: 2001-01-31}
  unsigned: astronaut.jpg
audio: {en: hello_en.wav, fr: hello_fr.wav}
matrix:
  portraits: [signed, lapsed, unsigned]
  audio: [en, fr]
"""


def test_consent_policy_names_each_portrait_once_per_place(fixture_backend, write_manifest):
    problems = problems_of(write_manifest(CONSENTED))
    assert [(p.path, p.message) for p in problems] == [
        ("matrix", "consent for portrait 'lapsed' expired on 2001-01-31 and policy.require_consent is true"),
        (
            "matrix",
            "portrait 'unsigned' has no consent record and policy.require_consent is true; "
            "add consent: {reference, subject, expires} under portraits.unsigned",
        ),
    ]


def test_consent_is_kept_and_only_enforced_by_policy(fixture_backend, write_manifest):
    manifest = load_manifest(
        write_manifest(CONSENTED.replace("require_consent: true", "require_consent: false"))
    )
    assert manifest.portraits["signed"].extra == {
        "consent": {"reference": "REL-1", "subject": "Model A", "expires": "2999-12-31"}
    }
    assert manifest.policy == {"require_consent": False, "overwrite": False}


def test_consent_dates_must_be_dates(fixture_backend, write_manifest):
    path = write_manifest(CONSENTED.replace("2999-12-31", "2999-13-31"))
    problems = problems_of(path)
    assert (7, 60, "portraits.signed.consent.expires") in [where(p) for p in problems]
    assert "'2999-13-31' is not a valid date (use YYYY-MM-DD)" in [p.message for p in problems]


def test_unused_entries_are_checked_too(fixture_backend, write_manifest):
    path = write_manifest(VALID.replace("  en: hello_en.wav", "  en: hello_en.wav\n  de: hello_de.wav"))
    [problem] = problems_of(path)
    assert (problem.line, problem.col, problem.path) == (8, 7, "audio.de")
    assert problem.message.endswith("hello_de.wav does not exist")
