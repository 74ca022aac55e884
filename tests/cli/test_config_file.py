"""The user config file: per-command option defaults; command line > environment > file > default."""

from __future__ import annotations

import json
import shutil

from factories import PORTRAIT, run_emo, write_wav

MANIFEST = """\
version: 1
defaults: {backend: testbars, fps: 25, resolution: 64, seed: 0, chunk_frames: 10}
portraits: {astro: astronaut.jpg}
audio: {voice: voice.wav}
jobs:
  - {portrait: astro, audio: voice}
"""


def test_the_config_file_sets_option_defaults_below_the_command_line_and_the_environment(tmp_path):
    shutil.copy(PORTRAIT, tmp_path / "astronaut.jpg")
    write_wav(tmp_path / "voice.wav", 0.3)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MANIFEST)
    config = tmp_path / "emo-config" / "config.toml"  # found in EMO_CONFIG_DIR, beside the identity
    config.parent.mkdir()
    config.write_text('[plan]\njson = true\n\n[render]\nexecutor = "nope"\n')
    env = {"EMO_CONFIG_DIR": str(config.parent)}

    planned = run_emo("plan", str(manifest), timeout=60, **env)
    assert planned.returncode == 0 and json.loads(planned.stdout)[0]["name"] == "astro/voice"
    # The render fails on the file's executor before it reads the (missing) manifest...
    from_file = run_emo("render", str(tmp_path / "missing.yaml"), timeout=60, **env)
    assert from_file.returncode == 2 and "--executor nope" in from_file.stderr
    # ...unless the environment or the command line says otherwise.
    from_env = run_emo("render", str(tmp_path / "missing.yaml"), timeout=60, EMO_EXECUTOR="inline", **env)
    from_line = run_emo("render", "--executor", "inline", str(tmp_path / "missing.yaml"), timeout=60, **env)
    for proc in (from_env, from_line):
        assert proc.returncode == 2 and "manifest not found" in proc.stderr and "nope" not in proc.stderr
    # EMO_CONFIG names another file; empty, none at all.
    other = tmp_path / "other.toml"
    other.write_text("[plan]\njson = false\n")
    table = run_emo("plan", str(manifest), timeout=60, EMO_CONFIG=str(other), **env)
    assert table.returncode == 0 and not table.stdout.lstrip().startswith("[")
    assert run_emo("render", str(tmp_path / "missing.yaml"), timeout=60, EMO_CONFIG="", **env).stderr.count("nope") == 0


def test_mistakes_in_the_config_file_name_the_file_and_the_key(tmp_path):
    config = tmp_path / "config.toml"
    cases = {
        '[render]\nretrys = 3\n': "[render] retrys: not an option of `emo render` (its options: address,",
        '[render]\nretries = -1\n': "[render] retries = -1: ",
        '[render]\nonly = "anna/fr"\n': "[render] only = 'anna/fr': expected a list",
        '[rendr]\nretries = 3\n': "[rendr]: `emo` has no such command",
        "[render\n": "at line 1",
        "quiet = true\n": "quiet = ...: expected a table",
    }
    for text, message in cases.items():
        config.write_text(text)
        proc = run_emo("render", "m.yaml", timeout=60, EMO_CONFIG=str(config))
        assert proc.returncode == 2, (text, proc.stderr)
        assert f"error: config file {config}: " in proc.stderr and message in proc.stderr, (text, proc.stderr)
        assert "Traceback" not in proc.stderr
    helped = run_emo("--help", timeout=60, EMO_CONFIG=str(config))  # read only when a command runs
    assert helped.returncode == 0
    missing = run_emo("render", "m.yaml", timeout=60, EMO_CONFIG=str(tmp_path / "nothing.toml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
