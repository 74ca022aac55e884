"""emo validate / plan / status / schema / init: exit codes, messages, output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emo_cli.api import validate_manifest
from emo_cli.backends.registry import get_backend_class
from emo_cli.backends.warp import WarpBackend
from emo_cli.cli import app, main
from emo_cli.execution.journal import ChunkRecord, Journal, segment_name, state_name
from emo_cli.planning import plan_manifest

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

GOOD = """
version: 1
defaults: {backend: fixture, chunk_frames: 60}
portraits: {astronaut: astronaut.jpg}
audio: {en: hello_en.wav, fr: hello_fr.wav, es: hello_es.wav}
matrix:
  portraits: [astronaut]
  audio: [en, fr, es]
"""

BAD = """
version: 1
defaults: {backend: fixture, fps: fast}
portraits: {astronaut: astronaut.jpg}
audio: {en: hello_en.wav}
jobs:
  - {portrait: astronaut, audio: fr}
"""


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """The real entry point, with its EmoError handling, as a user runs it."""
    monkeypatch.setattr(sys, "argv", ["emo", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_validate_valid_manifest_exits_0(fixture_backend, write_manifest):
    path = write_manifest(GOOD)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: valid\n"


def test_validate_invalid_manifest_lists_every_problem_and_exits_2(fixture_backend, write_manifest):
    path = write_manifest(BAD)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:2:35 defaults.fps: expected an integer, got a string ('fast')",
        f"{path}:6:34 jobs[0].audio: 'fr' is not defined under audio:",
        f"{path}:: 2 problems".replace("::", ":"),
    ]
    assert "Traceback" not in result.output


def test_validate_missing_file_exits_2(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml manifest not found" in result.stderr


def test_plan_and_status_report_progress_from_journals(fixture_backend, write_manifest):
    path = write_manifest(GOOD)
    plan = plan_manifest(path)
    en, fr, es = plan.jobs
    # fr: one of its chunks is checkpointed; es: every chunk and the final file exist.
    for job, done in ((fr, 1), (es, len(es.chunks()))):
        journal = Journal(job_id=job.id, num_frames=job.num_frames, chunk_frames=job.settings.chunk_frames)
        for index, (start, count) in enumerate(job.chunks()[:done]):
            segment = job.work_dir / segment_name(index)
            segment.parent.mkdir(parents=True, exist_ok=True)
            segment.write_bytes(b"segment")
            journal.chunks[index] = ChunkRecord(
                index, start, count, segment_name(index), "0" * 64, state_name(index), "0" * 64
            )
        if job is es:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            job.output.write_bytes(b"video")
            # done while the file is this one (its sidecar is not read by plan/status)
            journal.record_output(job.output.relative_to(job.output_dir).as_posix(),
                                  hashlib.sha256(b"video").hexdigest(), "off", "0" * 64)  # fmt: skip
        journal.save(job.work_dir)

    result = runner.invoke(app, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["id"], r["frames"], r["chunks"], r["chunks_done"], r["state"]) for r in rows] == [
        ("astronaut/en", en.id, 161, 3, 0, "pending"),
        ("astronaut/fr", fr.id, 123, 3, 1, "partial"),
        ("astronaut/es", es.id, 129, 3, 3, "done"),
    ]
    assert rows[0]["backend"] == "fixture" and rows[0]["output"] == str(en.output)
    assert rows[0]["duration"] == pytest.approx(6.4083125)

    table = runner.invoke(app, ["plan", str(path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert en.id in table.stdout and "partial 1/3" in table.stdout and "done" in table.stdout

    status = runner.invoke(app, ["status", str(path)], env={"COLUMNS": "200"})
    assert status.exit_code == 0
    assert "1 done, 1 partial, 1 pending" in status.stdout
    assert json.loads(runner.invoke(app, ["status", str(path), "--json"]).stdout) == rows


def test_plan_on_an_invalid_manifest_exits_2_without_traceback(
    fixture_backend, write_manifest, monkeypatch, capsys
):
    path = write_manifest(BAD)
    code, out, err = run_main(["plan", str(path)], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: 2 problems in manifest:")
    assert f"{path}:6:34 jobs[0].audio: 'fr' is not defined under audio:" in err
    assert "Traceback" not in err


def test_schema_prints_the_effective_schema(fixture_backend, tmp_path):
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    settings = schema["$defs"]["settings"]["properties"]
    assert settings["fixture"]["properties"]["mode"] == {"enum": ["calm", "lively"], "default": "calm"}
    assert settings["backend"]["default"] == "warp"
    target = tmp_path / "schema.json"
    written = runner.invoke(app, ["schema", "--output", str(target)])
    assert written.exit_code == 0
    assert json.loads(target.read_text()) == schema


def _every_object_is_closed(node) -> bool:
    if isinstance(node, dict):
        if node.get("type") == "object" and "additionalProperties" not in node:
            return False
        return all(_every_object_is_closed(v) for v in node.values())
    if isinstance(node, list):
        return all(_every_object_is_closed(v) for v in node)
    return True


def test_schema_is_valid_draft_2020_12_and_closes_every_object(fixture_backend):
    from jsonschema import Draft202012Validator

    from emo_cli.manifest import base_schema, effective_schema

    Draft202012Validator.check_schema(effective_schema())
    assert _every_object_is_closed(base_schema())


def test_a_backend_with_a_broken_options_schema_fails_only_the_manifests_that_use_it(
    fixture_backend, monkeypatch, write_manifest
):
    from emo_cli.manifest import effective_schema

    monkeypatch.setattr(
        fixture_backend, "options_schema", {"type": "object", "properties": {"gain": {"type": 5}}}
    )
    section = effective_schema()["$defs"]["settings"]["properties"]["fixture"]
    assert "declares an invalid options_schema" in section["description"]
    other = write_manifest("""
        version: 1
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav}
        jobs: [{portrait: astronaut, audio: en}]
    """, "other.yaml")
    assert validate_manifest(other) == []
    uses = write_manifest("""
        version: 1
        defaults: {backend: fixture}
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav}
        jobs: [{portrait: astronaut, audio: en}]
    """, "uses.yaml")
    (problem,) = validate_manifest(uses)
    assert problem.path == "defaults.backend"
    assert problem.message.startswith("backend 'fixture' declares an invalid options_schema")


def test_init_writes_a_starter_that_validates_once_files_exist(fixture_backend, tmp_path, media_dir):
    target = tmp_path / "project"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    manifest = target / "manifest.yaml"
    assert manifest.read_text().startswith("# yaml-language-server: $schema=./emo-manifest.schema.json\n")
    assert (
        "fixture"
        in json.loads((target / "emo-manifest.schema.json").read_text())["$defs"]["settings"]["properties"]
    )

    # Before the files exist: exactly the two missing inputs are reported.
    manifest.write_text(manifest.read_text().replace("backend: warp", "backend: fixture"))
    problems = validate_manifest(manifest)
    assert [p.path for p in problems] == ["portraits.me", "audio.hello"]

    shutil.copyfile(media_dir / "astronaut.jpg", target / "portrait.jpg")
    shutil.copyfile(media_dir / "hello_en.wav", target / "speech.wav")
    assert validate_manifest(manifest) == []


def test_init_starter_validates_with_the_default_backend(tmp_path, media_dir):
    assert get_backend_class("warp") is WarpBackend
    assert runner.invoke(app, ["init", str(tmp_path / "p")]).exit_code == 0
    shutil.copyfile(media_dir / "astronaut.jpg", tmp_path / "p" / "portrait.jpg")
    shutil.copyfile(media_dir / "hello_en.wav", tmp_path / "p" / "speech.wav")
    assert validate_manifest(tmp_path / "p" / "manifest.yaml") == []


def test_init_never_overwrites_without_force(tmp_path, monkeypatch, capsys):
    (tmp_path / "manifest.yaml").write_text("mine\n")
    code, out, err = run_main(["init", str(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert "manifest.yaml already exists; pass --force to overwrite" in err
    assert (tmp_path / "manifest.yaml").read_text() == "mine\n"
    assert not (tmp_path / "emo-manifest.schema.json").exists()
    assert runner.invoke(app, ["init", str(tmp_path), "--force"]).exit_code == 0
    assert (tmp_path / "manifest.yaml").read_text().startswith("# yaml-language-server")


def test_manifest_commands_never_import_torch(fixture_backend, write_manifest, tmp_path):
    """validate, plan, status, schema and init stay light: no torch, diffusers or transformers.

    Runs in a fresh interpreter, on the example manifests (every installed backend is imported
    for the schema) and on a manifest whose jobs plan fully with the fixture backend.
    """
    path = write_manifest(GOOD)
    script = f"""
import json, sys
sys.path.insert(0, "tests")
from conftest import FixtureBackend
from emo_cli.backends.registry import register_backend
register_backend(FixtureBackend)
from typer.testing import CliRunner
from emo_cli.cli import app
runs = [["validate", "manifests/demo.yaml"], ["plan", "manifests/localized.yaml"], ["status", "manifests/demo.yaml"],
        ["schema"], ["init", {str(tmp_path / "init")!r}],
        ["validate", {str(path)!r}], ["plan", {str(path)!r}], ["status", {str(path)!r}]]
codes = [CliRunner().invoke(app, args).exit_code for args in runs]
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps({{"codes": codes, "heavy": heavy}}))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["codes"][3:] == [0, 0, 0, 0, 0]
