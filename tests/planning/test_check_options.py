"""Backend option constraints are checked at planning, so `emo validate` reports them with file:line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from emo_cli.api import validate_manifest
from emo_cli.backends import registry
from emo_cli.backends.base import OptionProblem
from emo_cli.backends.emo import EmoBackend


@pytest.fixture
def strict_backend(fixture_backend, monkeypatch):
    class StrictBackend(fixture_backend):
        name = "strict"

        @classmethod
        def check_options(cls, options: Mapping[str, Any]) -> list[OptionProblem]:
            if options["mode"] == "lively" and options["gain"] > 2:
                return [OptionProblem("gain", f"settings.strict.gain ({options['gain']}) must be 2 or less "
                                              "in lively mode")]  # fmt: skip
            return []

    monkeypatch.setitem(registry._registered, "strict", StrictBackend)
    return StrictBackend


def test_validate_reports_an_option_constraint_where_the_option_is_set(strict_backend, write_manifest):
    manifest = write_manifest("""
        version: 1
        defaults:
          backend: strict
          strict: {mode: lively}
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav, fr: hello_fr.wav}
        jobs:
          - {portrait: astronaut, audio: en}
          - portrait: astronaut
            audio: fr
            settings:
              strict:
                gain: 3
    """)
    (problem,) = validate_manifest(manifest)
    assert (problem.line, problem.col, problem.path) == (13, 15, "jobs[1].settings.strict.gain")
    assert problem.message == "settings.strict.gain (3) must be 2 or less in lively mode"


def test_a_constraint_broken_by_shared_defaults_names_each_job(strict_backend, write_manifest):
    manifest = write_manifest("""
        version: 1
        defaults:
          backend: strict
          strict: {mode: lively, gain: 2.5}
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav, fr: hello_fr.wav}
        matrix: {portraits: [astronaut], audio: [en, fr]}
    """)
    assert [(p.line, p.col, p.path, p.message) for p in validate_manifest(manifest)] == [
        (4, 32, "defaults.strict.gain", f"matrix[astronaut,{audio}]: settings.strict.gain (2.5) must be 2 or "
         "less in lively mode") for audio in ("en", "fr")
    ]  # fmt: skip


def weights_with(tmp_path, **config):
    folder = tmp_path / "weights"
    (folder / "denoising_unet").mkdir(parents=True)
    (folder / "denoising_unet" / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_emo_checks_clip_and_motion_frames_against_the_weights_config(tmp_path):
    weights = weights_with(tmp_path, motion_frames=2, unet_config={"motion_max_seq_length": 16})
    options = EmoBackend.resolve_options({"weights": weights})
    assert EmoBackend.check_options(options) == []  # 12 + the weights' own 2 <= 16
    assert EmoBackend.check_options({**options, "clip_frames": 4, "motion_frames": 6}) == [
        OptionProblem("motion_frames", "settings.emo.motion_frames (6) must not exceed settings.emo.clip_frames (4)")
    ]
    assert EmoBackend.check_options({**options, "clip_frames": 16}) == [
        OptionProblem("clip_frames", "settings.emo.clip_frames + motion_frames is 18, but the temporal modules of "
                                     "these weights see at most 16 frames")  # fmt: skip
    ]
    # Weights that do not say: EMO's 4 motion frames, 32 frames for the temporal modules.
    bare = EmoBackend.resolve_options({"weights": weights_with(tmp_path / "bare")})
    assert EmoBackend.check_options({**bare, "clip_frames": 30}) == [
        OptionProblem("clip_frames", "settings.emo.clip_frames + motion_frames is 34, but the temporal modules of "
                                     "these weights see at most 32 frames")  # fmt: skip
    ]


def test_checking_emo_options_never_imports_torch(tmp_path):
    import subprocess
    import sys

    weights = weights_with(tmp_path, motion_frames=4)
    code = ("import sys\nfrom emo_cli.backends.emo import EmoBackend\n"
            f"EmoBackend.check_options(EmoBackend.resolve_options({{'weights': {weights!r}}}))\n"
            "print('torch' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
