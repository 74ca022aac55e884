"""`emo validate --deep`: faces in the portraits, found at validate time, each at file:line."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from emo_cli.api import validate_manifest
from emo_cli.cli import app

MANIFEST = """
version: 1
defaults:
  backend: fixture
portraits:
  astronaut: astronaut.jpg
  wall: wall.png
  tiny: tiny.png
  pair: pair.png
  unused: wall.png
audio:
  en: hello_en.wav
matrix:
  portraits: [astronaut, wall, tiny, pair]
  audio: [en]
"""


def portraits(media_dir):
    astronaut = Image.open(media_dir / "astronaut.jpg")
    Image.fromarray(np.full((200, 260, 3), 90, np.uint8)).save(media_dir / "wall.png")
    astronaut.resize((160, 160)).save(media_dir / "tiny.png")  # a face about 33 pixels wide
    pair = Image.new("RGB", (512 + 384, 512), (200, 200, 210))
    pair.paste(astronaut.resize((384, 384)), (0, 128))
    pair.paste(astronaut, (384, 0))
    pair.save(media_dir / "pair.png")


def test_deep_validation_reports_each_bad_portrait_at_its_line(fixture_backend, write_manifest, media_dir):
    portraits(media_dir)
    path = write_manifest(MANIFEST)
    assert validate_manifest(path) == []  # the cheap checks cannot see faces
    found = {(p.line, p.path): p.message for p in validate_manifest(path, deep=True)}
    assert set(found) == {(6, "portraits.wall"), (7, "portraits.tiny"), (8, "portraits.pair")}  # not unused
    assert found[(6, "portraits.wall")].startswith("no face found in wall.png")
    assert (
        "the face in tiny.png is only" in found[(7, "portraits.tiny")]
        and "at least 48" in found[(7, "portraits.tiny")]
    )
    assert found[(8, "portraits.pair")].startswith(
        "2 faces found in pair.png; the render would animate the largest"
    )

    result = CliRunner().invoke(app, ["validate", "--deep", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:6:") and "portraits.wall: no face found in wall.png" in lines[0]
    assert lines[-1] == f"{path}: 3 problems"
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0


def test_a_good_portrait_passes_deep_validation(fixture_backend, write_manifest, media_dir):
    portraits(media_dir)  # bad ones defined but unused by any job are not looked at
    path = write_manifest(MANIFEST.replace("[astronaut, wall, tiny, pair]", "[astronaut]"))
    result = CliRunner().invoke(app, ["validate", "--deep", str(path)])
    assert result.exit_code == 0, result.output
