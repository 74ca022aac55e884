"""make_plan: effective settings, hashed sources, durations, outputs and content-addressed ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emo_cli.errors import ManifestError
from emo_cli.fsutil import sha256_file
from emo_cli.manifest import load_manifest
from emo_cli.planning import make_plan, plan_manifest
from emo_cli.planning.fingerprint import canonical_json, job_id
from emo_cli.planning.job import Settings

ROOT = Path(__file__).resolve().parents[2]

BASE = """
version: 1
output_dir: renders
defaults:
  backend: fixture
  fps: 25
  seed: 0
  fixture: {gain: 1.5}
portraits:
  a: astronaut.jpg
audio:
  en: hello_en.wav
  fr: hello_fr.wav
jobs:
  - {portrait: a, audio: en}
  - {portrait: a, audio: fr, output: "{backend}/{job}.mp4"}
"""


def ids(path: Path) -> list[str]:
    return [job.id for job in plan_manifest(path).jobs]


def test_plan_holds_everything_a_render_needs(fixture_backend, write_manifest, media_dir):
    path = write_manifest(BASE)
    plan = make_plan(load_manifest(path))
    assert plan.manifest == path.resolve()
    assert plan.output_dir == (media_dir / "renders").resolve()
    assert plan.policy == {"require_consent": False, "overwrite": False}
    en, fr = plan.jobs
    assert en.name == "a/en" and en.field == "jobs[0]"
    assert en.settings == Settings(
        backend="fixture",
        fps=25,
        resolution=512,
        seed=0,
        chunk_frames=50,
        options={"gain": 1.5, "mode": "calm", "weights": "tiny"},
        qc={"enabled": True, "on_fail": "warn", "retries": 2, "sample_frames": 3, "video": True},
    )
    assert en.portrait.sha256 == sha256_file(media_dir / "astronaut.jpg")
    assert en.audio.sha256 == sha256_file(media_dir / "hello_en.wav")
    assert en.audio.field == "audio.en" and en.portrait.path == (media_dir / "astronaut.jpg").resolve()
    assert en.duration == pytest.approx(6.4083125)
    assert en.num_frames == 161 and en.chunks() == [(0, 50), (50, 50), (100, 50), (150, 11)]
    assert en.backend_version == "1.0" and en.weights_identity == "fixture-weights:tiny"
    assert en.output == plan.output_dir / "a" / "en.mp4"
    assert fr.output == plan.output_dir / "fixture" / f"{fr.id}.mp4"
    assert en.work_dir == plan.output_dir / ".emo" / "jobs" / en.id
    assert len(en.id) == 16 and int(en.id, 16) >= 0
    assert en.id == job_id(
        portrait_sha256=en.portrait.sha256,
        audio_sha256=en.audio.sha256,
        settings=en.settings,
        backend_version="1.0",
        weights_identity="fixture-weights:tiny",
    )


def test_ids_are_stable_across_processes_and_yaml_key_order(fixture_backend, write_manifest):
    first = ids(write_manifest(BASE, "one.yaml"))
    reordered = """
jobs:
  - {audio: en, portrait: a}
  - {output: "{backend}/{job}.mp4", audio: fr, portrait: a}
audio: {fr: hello_fr.wav, en: hello_en.wav}
portraits: {a: astronaut.jpg}
defaults: {fixture: {gain: 1.50}, seed: 0, fps: 25.0, backend: fixture}
output_dir: renders
version: 1
"""
    assert ids(write_manifest(reordered, "two.yaml")) == first
    script = (
        "import sys, json\n"
        "sys.path.insert(0, 'tests')\n"
        "from conftest import FixtureBackend\n"
        "from emo_cli.backends.registry import register_backend\n"
        "register_backend(FixtureBackend)\n"
        "from emo_cli.planning import plan_manifest\n"
        "print(json.dumps([j.id for j in plan_manifest(sys.argv[1]).jobs]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(write_manifest(BASE, "three.yaml"))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == first


def test_each_input_and_setting_changes_the_id(fixture_backend, write_manifest, media_dir, monkeypatch):
    """Portrait byte, audio byte, seed, fps, chunking, a backend option, backend version, weights."""
    base_en, base_fr = ids(write_manifest(BASE))

    def variant(text: str) -> tuple[str, str]:
        en, fr = ids(write_manifest(text, "variant.yaml"))
        return en, fr

    assert variant(BASE.replace("seed: 0", "seed: 1"))[0] != base_en
    assert variant(BASE.replace("fps: 25", "fps: 24"))[0] != base_en
    assert variant(BASE.replace("gain: 1.5", "gain: 1.25"))[0] != base_en
    assert variant(BASE.replace("fps: 25", "fps: 25\n  chunk_frames: 20"))[0] != base_en

    # Changing job B's settings leaves job A's id alone.
    en, fr = variant(
        BASE.replace('output: "{backend}/{job}.mp4"}', 'output: "{backend}/{job}.mp4", settings: {seed: 9}}')
    )
    assert en == base_en and fr != base_fr

    with monkeypatch.context() as patch:
        patch.setattr(fixture_backend, "version", "1.1")
        assert ids(write_manifest(BASE, "v.yaml"))[0] != base_en
    with monkeypatch.context() as patch:
        patch.setattr(fixture_backend, "weights_identity", classmethod(lambda cls, options: "other-weights"))
        assert ids(write_manifest(BASE, "w.yaml"))[0] != base_en
    assert ids(write_manifest(BASE, "again.yaml"))[0] == base_en

    portrait = media_dir / "astronaut.jpg"
    original = portrait.read_bytes()
    changed = bytearray(original)
    changed[-3] ^= 0x01  # one byte inside the JPEG data
    portrait.write_bytes(bytes(changed))
    assert ids(write_manifest(BASE, "p.yaml"))[0] != base_en
    portrait.write_bytes(original)
    assert ids(write_manifest(BASE, "p2.yaml"))[0] == base_en

    audio = media_dir / "hello_en.wav"
    wav = bytearray(audio.read_bytes())
    wav[1000] ^= 0x01  # one sample
    audio.write_bytes(bytes(wav))
    en, fr = ids(write_manifest(BASE, "a.yaml"))
    assert en != base_en and fr == base_fr


def test_canonical_json_ignores_key_order_and_integral_floats():
    assert canonical_json({"b": 1.0, "a": [2, {"y": 0.5, "x": True}]}) == '{"a":[2,{"x":true,"y":0.5}],"b":1}'
    settings = Settings("fixture", 25, 512, 0, 50, {"gain": 1.0})
    same = Settings("fixture", 25, 512, 0, 50, {"gain": 1})
    kwargs = {"portrait_sha256": "p", "audio_sha256": "a", "backend_version": "1", "weights_identity": "w"}
    assert job_id(settings=settings, **kwargs) == job_id(settings=same, **kwargs)


def test_backend_path_options_are_relative_to_the_manifest(write_manifest, media_dir, monkeypatch):
    from emo_cli.backends import registry
    from emo_cli.backends.emo import EmoBackend

    # The emo backend's weights folder, given relative to the manifest, is found from any cwd.
    monkeypatch.setitem(registry._registered, EmoBackend.name, EmoBackend)
    monkeypatch.chdir("/")
    path = write_manifest(BASE.replace("backend: fixture", "backend: emo").replace(
        "fixture: {gain: 1.5}", "emo: {weights: models/emo}"))  # fmt: skip
    with pytest.raises(ManifestError) as caught:
        make_plan(load_manifest(path))
    problems = caught.value.problems
    assert [p.path for p in problems] == ["jobs[0]", "jobs[1]"]
    for problem in problems:
        assert not problem.message.startswith("jobs[")  # the path says which job, once
        assert f"EMO weights folder {media_dir / 'models' / 'emo'} does not exist" in problem.message


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_the_test_factory_makes_the_ids_the_planner_makes(test_backends, write_manifest, media_dir, suffix):
    from factories import make_job

    from emo_cli.backends.registry import get_backend_class

    path = write_manifest(f"""
        version: 1
        output: "{{portrait}}/{{audio}}.{suffix}"
        defaults: {{backend: testbars, resolution: 64, chunk_frames: 10}}
        portraits: {{astronaut: astronaut.jpg}}
        audio: {{hello_en: hello_en.wav}}
        jobs: [{{portrait: astronaut, audio: hello_en}}]
    """)
    (planned,) = plan_manifest(path).jobs
    made = make_job(media_dir / "out", media_dir / "astronaut.jpg", media_dir / "hello_en.wav",
                    options=get_backend_class("testbars").resolve_options(None), output=f"x.{suffix}")  # fmt: skip
    assert made.id == planned.id


def test_the_settings_field_gives_each_revision_its_own_output(fixture_backend, write_manifest):
    text = """
        version: 1
        output: "{portrait}/{audio}-{settings}.mp4"
        defaults: {backend: fixture}
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav, fr: hello_fr.wav}
        jobs:
          - {portrait: astronaut, audio: en, settings: {seed: 1}}
          - {portrait: astronaut, audio: en, settings: {seed: 2}}
          - {portrait: astronaut, audio: fr, settings: {seed: 1}}
    """
    one, two, fr = plan_manifest(write_manifest(text)).jobs
    assert one.output != two.output and one.output.parent == two.output.parent
    token = one.output.stem.removeprefix("en-")
    assert len(token) == 8 and fr.output.name == f"fr-{token}.mp4"  # the same settings, the same token
    with pytest.raises(ManifestError, match="renders to 'astronaut/en.mp4'"):
        plan_manifest(write_manifest(text.replace("-{settings}", "")))
