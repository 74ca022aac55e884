"""`emo weights init/info`, and the manifest commands with `backend: emo` (which stay torch-free)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from factories import REPO
from tiny import save_components
from typer.testing import CliRunner

from emo_cli.cli import app, main

runner = CliRunner()


def run_main(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["emo", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_weights_init_assembles_a_folder_that_info_describes_and_verifies(tmp_path, monkeypatch, capsys):
    sources = save_components(tmp_path / "components")
    out = tmp_path / "weights"
    args = ["weights", "init", "--sd15", str(sources["sd15"]), "--vae", str(sources["vae"]),
            "--motion-adapter", str(sources["motion_adapter"]), "--wav2vec", str(sources["wav2vec"]),
            "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    index = json.loads((out / "emo_weights.json").read_text())
    assert sorted(index["parts"]) == sorted(["reference_unet", "denoising_unet", "face_locator", "audio_proj",
                                             "speed_encoder", "vae", "audio_encoder", "scheduler"])  # fmt: skip
    assert f"emo-weights:sha256:{index['content_sha256']}" in result.stdout
    # New weights carry the trainable speed layers and AnimateDiff's per-frame temporal norm.
    backbone = json.loads((out / "denoising_unet" / "config.json").read_text())
    assert backbone["speed_attention_mode"] == "frame_axis" and backbone["temporal_norm"] == "per_frame"

    info = runner.invoke(app, ["weights", "info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    report = json.loads(info.stdout)
    assert report["verified"] and report["identity"] == f"emo-weights:sha256:{index['content_sha256']}"
    parts = {p["name"]: p for p in report["parts"]}
    assert parts["reference_unet"]["parameters"] > 0 and parts["reference_unet"]["dtypes"] == ["F32"]
    # The backbone is the reference UNet plus temporal modules and the EMO layers.
    assert parts["denoising_unet"]["parameters"] > parts["reference_unet"]["parameters"]

    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 1 and "already exists; choose another --out or pass --force" in err

    weights = out / "denoising_unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    tampered = runner.invoke(app, ["weights", "info", str(out)])
    assert tampered.exit_code == 1 and "sha256 differs from the index" in tampered.output


def test_weights_init_names_the_missing_component(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(["weights", "init", "--sd15", str(tmp_path / "sd"), "--vae", "x", "--motion-adapter",
                             "y", "--wav2vec", "z", "--out", str(tmp_path / "w")], monkeypatch, capsys)  # fmt: skip
    assert code == 1
    assert "--sd15" in err and "no such folder" in err and "stable-diffusion-v1-5" in err
    assert not (tmp_path / "w").exists()


def test_validate_and_plan_with_backend_emo_never_import_torch(emo_weights, media_dir):
    manifest = media_dir / "emo.yaml"
    manifest.write_text(textwrap.dedent(f"""
        version: 1
        defaults:
          backend: emo
          emo: {{weights: {json.dumps(str(emo_weights))}, steps: 20, scheduler: dpmsolver++}}
        portraits: {{astronaut: astronaut.jpg}}
        audio: {{en: hello_en.wav}}
        jobs:
          - {{portrait: astronaut, audio: en}}
        """))  # fmt: skip
    missing = media_dir / "missing.yaml"
    missing.write_text(manifest.read_text().replace(str(emo_weights), str(media_dir / "no-weights")))
    script = f"""
import json, sys
from typer.testing import CliRunner
from emo_cli.cli import app
runs = [CliRunner().invoke(app, args) for args in
        (["validate", {str(manifest)!r}], ["plan", {str(manifest)!r}, "--json"], ["plan", {str(missing)!r}])]
from emo_cli.planning import plan_manifest
identity = plan_manifest({str(manifest)!r}).jobs[0].weights_identity
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps({{"codes": [r.exit_code for r in runs], "out": [r.output + str(r.exception) for r in runs], "heavy": heavy,
                  "identity": identity}}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["codes"][:2] == [0, 0], report["out"]
    identity = (
        "emo-weights:sha256:" + json.loads((emo_weights / "emo_weights.json").read_text())["content_sha256"]
    )
    assert report["identity"] == identity
    assert report["codes"][2] != 0 and "no-weights does not exist; assemble one with" in report["out"][2]


def test_weights_init_reports_every_bad_path_before_importing_torch(tmp_path):
    sources = save_components(tmp_path / "components")
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights").mkdir()
    code = textwrap.dedent(f"""
        import sys
        from emo_cli.cli import main
        sys.argv = ["emo", "weights", "init", "--sd15", {str(tmp_path / "nosuch-sd15")!r},
                    "--vae", {str(tmp_path / "empty")!r}, "--motion-adapter", {str(sources["motion_adapter"])!r},
                    "--wav2vec", "./nosuch-wav2vec", "--dtype", "float8", "--out", {str(tmp_path / "weights")!r}]
        try:
            main()
        finally:
            print("torch imported:", "torch" in sys.modules, file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "5 problems with the arguments" in err and "Traceback" not in err
    assert f"--sd15 {tmp_path / 'nosuch-sd15'}: no such folder" in err
    assert f"--vae {tmp_path / 'empty'}: not sd-vae-ft-mse" in err and "config.json missing" in err
    assert "--wav2vec ./nosuch-wav2vec: no such folder" in err
    assert "--dtype 'float8': must be one of float32, float16, bfloat16" in err
    assert "already exists; choose another --out or pass --force" in err
    assert "--motion-adapter" not in err  # the good one is not a problem
    assert "torch imported: False" in err
