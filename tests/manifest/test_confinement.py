"""Confinement (EMO_CONFINE=DIR, emo render --confine DIR): a manifest submitted by others may
read only files inside its folder, write only inside DIR, and never name a signing key."""

from __future__ import annotations

import shutil

import pytest
from factories import run_emo

from emo_cli.api import validate_manifest

GOOD = """
version: 1
output_dir: renders
defaults: {backend: fixture, fps: 25, seed: 0}
portraits: {a: astronaut.jpg}
audio: {en: hello_en.wav}
jobs: [{portrait: a, audio: en}]
"""


@pytest.fixture
def confined(monkeypatch, media_dir):
    monkeypatch.setenv("EMO_CONFINE", str(media_dir))
    return media_dir


def messages(path) -> list[str]:
    return [str(p) for p in validate_manifest(path)]


def test_a_manifest_inside_the_confinement_passes(fixture_backend, confined, write_manifest):
    assert messages(write_manifest(GOOD)) == []


def test_inputs_outside_the_manifests_folder_are_refused_before_they_are_read(
    fixture_backend, confined, write_manifest, tmp_path_factory
):
    outside = tmp_path_factory.mktemp("secrets")
    shutil.copyfile(confined / "hello_en.wav", outside / "secret.wav")
    (confined / "link.jpg").symlink_to("/etc/passwd")  # a symlink out counts as outside
    text = GOOD.replace("hello_en.wav", str(outside / "secret.wav")).replace("astronaut.jpg", "link.jpg")
    found = messages(write_manifest(text))
    assert any("audio.en" in m and "outside the manifest's folder" in m for m in found), found
    assert any("portraits.a" in m and "/etc/passwd" in m for m in found), found
    assert not any("not a readable image" in m for m in found)  # refused before being opened


def test_output_dir_outside_and_a_signing_section_are_refused(fixture_backend, confined, write_manifest):
    text = GOOD.replace("output_dir: renders", "output_dir: ../elsewhere") + "signing: {key: k.pem, certs: c.pem}\n"
    found = messages(write_manifest(text))
    assert any("output_dir" in m and "outside the confinement" in m for m in found), found
    assert any("signing" in m and "may not name a signing key" in m for m in found), found


def test_unconfined_the_same_manifest_may_read_outside(fixture_backend, media_dir, write_manifest, tmp_path_factory):
    outside = tmp_path_factory.mktemp("shared")
    shutil.copyfile(media_dir / "hello_en.wav", outside / "voice.wav")
    assert messages(write_manifest(GOOD.replace("hello_en.wav", str(outside / "voice.wav")))) == []


def test_emo_render_confine_refuses_with_file_and_line(write_manifest, media_dir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("other")
    shutil.copyfile(media_dir / "hello_en.wav", outside / "x.wav")
    path = write_manifest(GOOD.replace("fixture", "testbars").replace("hello_en.wav", str(outside / "x.wav")))
    done = run_emo("render", str(path), "--confine", str(media_dir), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "m.yaml:5:13 audio.en" in done.stderr and "outside the manifest's folder" in done.stderr
    assert "Traceback" not in done.stderr
