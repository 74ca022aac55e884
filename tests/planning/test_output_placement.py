"""Outputs never land on an input, in the work dir, outside output_dir through a symlink, below a
regular file, or under a name the file system refuses: `emo validate` says so at file:line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from emo_cli.api import validate_manifest

HEAD = """
version: 1
output_dir: {output_dir}
defaults: {{backend: fixture, fps: 25, seed: 0}}
portraits:
  a: astronaut.jpg
audio:
  en: en.mp4
  fr: hello_fr.wav
jobs:
  - {{portrait: a, audio: fr}}
  - {{portrait: a, audio: en, output: "{output}"}}
"""


@pytest.fixture
def manifest(fixture_backend, media_dir, write_manifest):
    shutil.copyfile(media_dir / "hello_en.wav", media_dir / "en.mp4")  # an audio input named like an output

    def write(output: str, output_dir: str = "renders") -> Path:
        return write_manifest(HEAD.format(output=output, output_dir=output_dir))

    return write


def messages(path: Path) -> list[str]:
    return [str(problem) for problem in validate_manifest(path)]


def test_an_output_that_is_an_input_is_refused_at_its_line(manifest, media_dir):
    path = manifest("{audio}.mp4", output_dir=".")
    found = messages(path)
    assert len(found) == 1
    assert "m.yaml:11:" in found[0] and "jobs[1].output" in found[0]
    assert "is the input audio.en" in found[0]
    assert (media_dir / "en.mp4").read_bytes() == (media_dir / "hello_en.wav").read_bytes()


def test_an_output_onto_the_manifest_or_a_hard_link_of_an_input_is_refused(manifest, media_dir):
    (media_dir / "renders").mkdir()
    os.link(media_dir / "hello_fr.wav", media_dir / "renders" / "linked.mp4")
    assert any("is the input audio.fr" in m for m in messages(manifest("linked.mp4")))
    path = manifest("m.yaml.mp4", output_dir=".")
    (media_dir / "m.yaml.mp4").symlink_to(media_dir / "m.yaml")
    assert any("is the input the manifest itself" in m for m in messages(path))


def test_an_output_in_the_work_dir_is_refused(manifest):
    found = messages(manifest(".emo/jobs/{portrait}.mp4"))
    assert len(found) == 1 and "lies in the work dir .emo/" in found[0] and "jobs[1].output" in found[0]


def test_an_output_through_a_folder_symlink_out_of_output_dir_is_refused(manifest, media_dir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (media_dir / "renders").mkdir()
    (media_dir / "renders" / "out").symlink_to(elsewhere, target_is_directory=True)
    found = messages(manifest("out/{portrait}.mp4"))
    assert len(found) == 1 and "through a symlink, outside output_dir" in found[0]
    (media_dir / "renders" / "work").symlink_to(media_dir / "renders" / ".emo", target_is_directory=True)
    found = messages(manifest("work/{portrait}.mp4"))
    assert any("into the work dir" in m for m in found), found


def test_output_dir_or_an_outputs_folder_being_a_file_is_refused(manifest, media_dir):
    (media_dir / "renders").write_text("a file")
    found = messages(manifest("{portrait}.mp4"))
    assert found and all("output_dir" in m and "is a file, not a folder" in m for m in found)
    (media_dir / "renders").unlink()
    (media_dir / "renders").mkdir()
    (media_dir / "renders" / "a").write_text("a file")
    found = messages(manifest("{portrait}/{audio}.mp4"))
    assert any("the output's folder" in m and "is a file, not a folder" in m for m in found)
    (media_dir / "renders" / "x.mp4").mkdir()
    assert any("is a folder; an output must be a file" in m for m in messages(manifest("x.mp4")))


def test_an_output_name_too_long_for_the_file_system_is_refused_at_validate(manifest):
    name_max = os.pathconf("/", "PC_NAME_MAX")
    fits = "a" * (name_max - 35 - len(".mp4")) + ".mp4"
    assert messages(manifest(fits)) == []
    found = messages(manifest("a" + fits))
    assert len(found) == 1 and "the file system takes names of at most" in found[0]
