"""What `emo --help` and `emo validate` load: none of the heavy libraries (their start-up time is
measured by benchmarks/startup.py; this keeps the gain from quietly going away)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from factories import REPO, emo_env

# rich (help and tables), numpy and PyAV (rendering, probing other formats), Pydantic (Typer's
# conversion of values other than plain strings, paths and flags), and the render stack.
HEAVY = ("rich", "numpy", "av", "pydantic", "torch", "cv2", "mediapipe", "scipy", "ray")

DRIVER = """
import json, runpy, sys
watched = set(json.loads(sys.argv[2]))
sys.argv = ["emo", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("emo_cli", run_name="__main__")
except SystemExit as exit:
    code = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
print("loaded:", json.dumps(heavy), file=sys.stderr)
sys.exit(code)
"""


def run_light(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`emo ARGS` in a fresh process with only the built-in backends installed (a plugin's own
    imports are its own), and the heavy libraries it loaded."""
    env = {**emo_env(), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args), json.dumps(HEAVY)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    line = next(line for line in done.stderr.splitlines() if line.startswith("loaded: "))
    return done, json.loads(line.removeprefix("loaded: "))


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--help"], "validate"),
        (["validate", "manifests/demo.yaml"], "manifests/demo.yaml: valid"),
        (["validate", "--help"], "--deep"),
    ],
)
def test_help_and_validate_load_no_heavy_library(args, shown):
    done, loaded = run_light(*args)
    assert done.returncode == 0, done.stderr
    assert shown in done.stdout
    assert loaded == []


def test_a_manifest_with_problems_is_reported_without_heavy_libraries(tmp_path):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("version: 1\nportraits: {}\naudio: {}\njobs: [{portrait: anna, audio: fr}]\n")
    done, loaded = run_light("validate", str(manifest))
    assert done.returncode == 2
    assert "'anna' is not defined under portraits:" in done.stderr
    assert loaded == []


def test_the_help_lists_each_command_as_its_built_command_would():
    """`emo --help` reads the built-in commands' help lines without building them (see
    emo_cli.cli.commands); what it lists is what the built commands say."""
    from emo_cli.cli.commands import BUILTIN, builtin_command, builtin_summary

    for name in BUILTIN:
        assert builtin_summary(name) == builtin_command(name).get_short_help_str(limit=1000), name


def test_a_mistyped_command_is_answered_with_the_closest_ones():
    done, loaded = run_light("valid", "manifests/demo.yaml")
    assert done.returncode == 2 and "No such command 'valid'. Did you mean 'validate'?" in done.stderr
    assert loaded == []


@pytest.mark.parametrize("group", ["dataset", "train", "weights"])
def test_group_help_gives_each_command_its_first_sentence_whole(group):
    """Click cuts a command's help line at the column with `...`; emo's groups, the ones a
    backend contributes too (`emo weights`), list the first sentence whole, wrapped."""
    from typer.testing import CliRunner

    from emo_cli.cli import app

    result = CliRunner().invoke(app, [group, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:", 1)[1]
    assert commands.strip() and "..." not in commands, commands
