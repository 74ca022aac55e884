"""The README's shell lines run as written.

Every command line in README.md's code blocks is either run here, in README order, in a
temporary copy of `manifests/` (so the relative paths mean what they say and nothing is written
into the repository), or listed in SKIPPED with the reason it cannot run in a test. A line that
is neither fails the test, so a new README command gets classified when it is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import REPO

README = REPO / "README.md"
COMMAND = re.compile(r"^(emo|make|pip|pipx|python|docker|hf|requirements/)\b")

# Lines (after joining `\` continuations, without trailing comments) that are not run, and why.
SKIPPED = {
    "make demo": "builds a venv: timed by hand (README figure); `make` itself is tested in test_install.py",
    "make test": "runs this suite",
    "pip install .": "installs into the environment running the tests",
    "pip install '.[diffusion]'": "installs into the environment running the tests",
    "pip install '.[ray]'": "installs into the environment running the tests",
    "pipx install .": "installs globally; pipx is not a test dependency",
    "pipx install '.[diffusion,ray]'": "installs globally; pipx is not a test dependency",
    "pip install --require-hashes --no-deps -r requirements/core.txt -r requirements/no-deps-core.txt": "what `make demo` runs; the locks themselves are checked in test_install.py",
    "pip install --no-deps .": "installs into the environment running the tests",
    "docker build -f docker/Dockerfile -t emo-cli:0.1.0-cuda12.8 .": "needs Docker and the CUDA base image",
    "docker run --rm --gpus all -v emo-identity:/config -v /srv/emo-weights:/weights:ro "
    '-v "$PWD":/data emo-cli:0.1.0-cuda12.8 render manifests/batch.yaml': "needs the image and a GPU",
    "emo weights init --sd15 models/stable-diffusion-v1-5 --vae models/sd-vae-ft-mse "
    "--motion-adapter models/animatediff-motion-adapter-v1-5-2 --wav2vec models/wav2vec2-base-960h "
    "--out models/emo-start": "needs the four public models (gigabytes); tests/backends/emo uses tiny ones",
    "emo weights info models/emo-start": "needs the folder `emo weights init` makes above",
    "emo render manifests/localized.yaml --devices cuda:0,1": "needs two CUDA GPUs",
    "emo render manifests/localized.yaml --executor ray --address auto": "needs a running Ray cluster",
    "emo verify copy.mp4 --trust-anchor root.pem": "names a copy and a root certificate of the reader's",
    "hf download fudan-generative-ai/hallo --local-dir pretrained_models": "downloads gigabytes from the hub; "
    "tests/backends/emo/test_hallo_import.py imports a Hallo-layout folder written by the test",
    "emo weights import-hallo pretrained_models --out models/hallo": "needs Hallo's download (above); "
    "test_hallo_import.py runs the command on a tiny one",
    "emo dataset prepare footage/ --out data/presenters --identity people.yaml": "names the reader's footage; "
    "tests/training/test_prepare.py runs it on videos it makes",
    "emo weights init --sd15 sd15/ --vae vae/ --motion-adapter animatediff/ --wav2vec wav2vec/ --out weights/start":
    "needs the four public models (gigabytes)",
    "emo train stage1 --config train.yaml --data data/presenters --weights weights/start  --out runs/stage1":
    "needs a dataset and weights; tests/training/test_train.py and benchmarks/train_smoke.py run the stages",
    "emo train export runs/stage1 --out weights/stage1": "needs the training run above",
    "emo train stage2 --config train.yaml --data data/presenters --weights weights/stage1 --out runs/stage2":
    "needs the training run above",
    "emo train export runs/stage2 --out weights/stage2": "needs the training run above",
    "emo train stage3 --config train.yaml --data data/presenters --weights weights/stage2 --out runs/stage3":
    "needs the training run above",
    "emo train export runs/stage3 --out weights/presenters": "needs the training run above",
    "emo qc out/anna/fr.mp4": "names a video of the reader's; tests/quality/test_qc_cli.py runs emo qc on renders",
    "emo qc out/anna/fr.mp4 --audio fr.wav --portrait anna.jpg --json": "names files of the reader's",
    "emo qc out/anna/fr.mp4 --min-lip-sync 0.5 --max-delta-e 4 --no-provenance": "names a video of the reader's",
}


def readme_commands() -> list[str]:
    """Shell lines of README.md's indented and fenced (bash, sh or untagged) code blocks."""
    commands: list[str] = []
    fence: str | None = None
    pending = ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else (line[3:].strip() or "text")
            continue
        in_block = fence in ("bash", "sh", "console", "text") or (fence is None and line.startswith("    "))
        if not in_block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1].rstrip() + " "
            continue
        pending = ""
        text = re.sub(r"\s+#\s.*$", "", text).strip()
        if COMMAND.match(text):
            commands.append(text)
    return commands


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    assert {"emo validate manifests/localized.yaml", "make demo", "make test"} <= set(commands)
    unclassified = [c for c in commands if c not in SKIPPED and not c.startswith("emo ")]
    assert unclassified == []
    assert set(SKIPPED) <= set(commands), "SKIPPED names a line the README no longer has"


@pytest.mark.slow
def test_readme_emo_commands_run_as_written(tmp_path):
    """Renders the localized example (3 short jobs on the CPU), so the later lines have outputs."""
    shutil.copytree(REPO / "manifests", tmp_path / "manifests", ignore=shutil.ignore_patterns("out"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "200",
    }
    ran = []
    for command in readme_commands():
        if command in SKIPPED or not command.startswith("emo "):
            continue
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)  # fmt: skip
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        ran.append((command, result.stdout))
    commands = [command for command, _ in ran]
    assert "emo init my-project" in commands and (tmp_path / "my-project" / "manifest.yaml").is_file()
    schema = json.loads((tmp_path / "emo-manifest.schema.json").read_text())
    assert schema["title"] == "emo-cli manifest, version 1"
    outputs = sorted((tmp_path / "manifests" / "out" / "localized" / "astronaut").glob("*.mp4"))
    assert [p.name for p in outputs] == ["en.mp4", "es.mp4", "fr.mp4"]
    verdict = dict(ran)["emo verify manifests/out/localized/astronaut/fr.mp4 --json"]
    assert json.loads(verdict)["ai_generated"] is True


def test_example_manifests_schema_file_is_what_emo_schema_writes(tmp_path):
    """The example manifests point editors at ./emo-manifest.schema.json: it is committed, and current."""
    for manifest in sorted((REPO / "manifests").glob("*.yaml")):
        assert manifest.read_text().startswith("# yaml-language-server: $schema=./emo-manifest.schema.json\n")
    fresh = tmp_path / "schema.json"
    subprocess.run([Path(sys.executable).parent / "emo", "schema", "--output", str(fresh)], check=True,
                   capture_output=True)  # fmt: skip
    assert (REPO / "manifests" / "emo-manifest.schema.json").read_text() == fresh.read_text(), (
        "manifests/emo-manifest.schema.json is stale: run `emo schema --output manifests/emo-manifest.schema.json`"
    )
