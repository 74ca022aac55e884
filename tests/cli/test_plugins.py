"""Plugins that fail to load, whatever they raise, fail only what uses them; plugins add commands."""

from __future__ import annotations

import os

from factories import PLUGINS, REPO
from factories import run_emo as run

# The broken plugin installed (on PYTHONPATH) beside this checkout and the test plugins.
WITH_BROKEN = os.pathsep.join([str(REPO), str(PLUGINS), str(PLUGINS / "broken")])


def run_emo(*args: str, timeout: float):
    return run(*args, timeout=timeout, PYTHONPATH=WITH_BROKEN)


def manifest(folder, backend: str):
    path = folder / f"{backend}.yaml"
    path.write_text(f"version: 1\ndefaults: {{backend: {backend}}}\nportraits: {{astronaut: astronaut.jpg}}\n"
                    "audio: {en: hello_en.wav}\njobs: [{portrait: astronaut, audio: en}]\n")  # fmt: skip
    return path


def test_a_backend_that_raises_at_import_fails_only_the_manifests_that_use_it(media_dir):
    ok = run_emo("validate", str(manifest(media_dir, "warp")), timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = run_emo("validate", str(manifest(media_dir, "broken")), timeout=60)
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert lines[0].endswith(
        "defaults.backend: backend 'broken' is installed but cannot be imported (RuntimeError: this plugin "
        "needs EMO_TEST_BROKEN_CONFIG); reinstall emo-cli or the package that provides it"
    )
    assert lines[1:] == [f"{media_dir / 'broken.yaml'}: 1 problem"]
    assert "Traceback" not in bad.stderr


def test_an_executor_that_raises_at_import_fails_only_when_asked_for(media_dir):
    demo = str(manifest(media_dir, "warp"))
    used = run_emo("render", demo, "--executor", "broken", timeout=60)
    assert used.returncode == 2 and "Traceback" not in used.stderr
    assert used.stderr.replace("\n", " ").strip() == (
        "error: --executor broken: executor 'broken' is installed but cannot be imported (RuntimeError: this "
        "plugin needs EMO_TEST_BROKEN_CONFIG); reinstall emo-cli or the package that provides it"
    )
    unknown = run_emo("render", demo, "--executor", "slurm", timeout=60)
    assert unknown.returncode == 2
    assert "--executor slurm: expected one of broken, inline, local, ray, testinline" in unknown.stderr
    assert not (media_dir / "out").exists()  # nothing rendered


def test_commands_come_from_plugins_and_a_broken_one_fails_alone():
    listing = run_emo("--help", timeout=60)
    assert listing.returncode == 0
    assert "weights" in listing.stdout and "broken-tool" in listing.stdout  # the emo backend's, the broken one's
    assert run_emo("weights", "--help", timeout=60).returncode == 0
    used = run_emo("broken-tool", "--anything", timeout=60)
    assert used.returncode != 0 and "Traceback" not in used.stderr
    assert "the `emo broken-tool` command (emo_test_broken:app) cannot be loaded (RuntimeError: this plugin " \
           "needs EMO_TEST_BROKEN_CONFIG)" in used.stderr.replace("\n", " ")
