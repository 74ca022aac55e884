"""`emo weights import-hallo` on a Hallo-layout download written from the reference state dicts.

The download is laid out as Hallo's README has it (hallo/net.pth, stable-diffusion-v1-5/unet/
config.json, sd-vae-ft-mse/, wav2vec/wav2vec2-base-960h/, face_analysis/models/*.onnx,
audio_separator/Kim_Vocal_2.onnx), with the tiny reference weights in net.pth. The imported
folder must load through `load_model` and reproduce Hallo's video; broken downloads must fail
with every problem named and a non-zero exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from factories import REPO
from hallo_tiny import load_reference_set
from typer.testing import CliRunner

from emo_cli.backends.emo.hallo_reference import (
    MODULE_FILES,
    ReferenceSet,
    compare,
    expected_outputs,
    run_reference,
)
from emo_cli.cli import app, main

runner = CliRunner()


@pytest.fixture(scope="module")
def reference():
    return load_reference_set()


def write_download(root, ref: ReferenceSet, net: dict | None = None):
    """A Hallo download with the reference weights, plus the inference YAML of its tiny sizes."""
    from diffusers import AutoencoderKL
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    c = ref.configs
    (root / "hallo").mkdir(parents=True)
    if net is None:
        net = {f"{prefix}.{key}": value for prefix in MODULE_FILES for key, value in ref.states[prefix].items()}
    torch.save(net, root / "hallo" / "net.pth")
    (root / "stable-diffusion-v1-5" / "unet").mkdir(parents=True)
    (root / "stable-diffusion-v1-5" / "unet" / "config.json").write_text(json.dumps(c["unet_base_config"]))
    vae = AutoencoderKL.from_config({k: v for k, v in c["vae"].items() if not k.startswith("_")})
    vae.load_state_dict(ref.states["vae"])
    vae.save_pretrained(root / "sd-vae-ft-mse")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=c["audioproj"]["channels"], num_hidden_layers=c["audioproj"]["blocks"], num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, num_feat_extract_layers=2,
    )).save_pretrained(root / "wav2vec" / "wav2vec2-base-960h")  # fmt: skip
    (root / "face_analysis" / "models").mkdir(parents=True)
    for name in ("scrfd_10g_bnkps.onnx", "glintr100.onnx"):
        (root / "face_analysis" / "models" / name).write_bytes(b"stand-in for " + name.encode())
    (root / "audio_separator").mkdir()
    (root / "audio_separator" / "Kim_Vocal_2.onnx").write_bytes(b"stand-in for the vocal separator")
    config = root / "inference.yaml"
    run = c["run"]
    config.write_text(yaml.safe_dump({
        "unet_additional_kwargs": c["unet_additional_kwargs"], "noise_scheduler_kwargs": c["scheduler"],
        "data": {"n_sample_frames": run["clip_length"], "n_motion_frames": run["n_motion_frames"]},
    }))  # fmt: skip
    return config


def run_main(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["emo", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.mark.slow
def test_import_with_the_cli_loads_and_reproduces_hallos_video(reference, tmp_path):
    from emo_cli.backends.emo.pipeline import EmoPipeline, load_model

    download = tmp_path / "pretrained_models"
    config = write_download(download, reference)
    out = tmp_path / "weights"
    result = runner.invoke(app, ["weights", "import-hallo", str(download), "--out", str(out),
                                 "--hallo-config", str(config)])  # fmt: skip
    assert result.exit_code == 0, result.output
    index = json.loads((out / "emo_weights.json").read_text())
    assert index["model"] == "hallo" and index["clip_frames"] == 4 and index["motion_frames"] == 2
    assert sorted(index["parts"]) == sorted(["reference_unet", "denoising_unet", "face_locator", "audio_proj",
                                             "image_proj", "vae", "audio_encoder", "scheduler", "face_analysis",
                                             "audio_separator"])  # fmt: skip
    assert (out / "face_analysis" / "models" / "glintr100.onnx").read_bytes() == b"stand-in for glintr100.onnx"
    assert (out / "audio_separator" / "Kim_Vocal_2.onnx").is_file()
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction" and scheduler["rescale_betas_zero_snr"]
    assert scheduler["timestep_spacing"] == "trailing" and scheduler["beta_schedule"] == "linear"
    info = runner.invoke(app, ["weights", "info", str(out), "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["verified"], info.output

    torch.set_num_threads(2)
    pipeline = EmoPipeline(load_model(out))
    assert pipeline.backbone.config.reference_rows == "alternating" and pipeline.motion_frames == 2
    results = compare(run_reference(pipeline, reference, "run"), expected_outputs(reference, "run"))
    assert [r for r in results if r.name == "video"] and all(r.ok for r in results), results


def test_missing_files_are_all_named(reference, tmp_path, monkeypatch, capsys):
    download = tmp_path / "pretrained_models"
    write_download(download, reference)
    (download / "audio_separator" / "Kim_Vocal_2.onnx").unlink()
    (download / "sd-vae-ft-mse" / "config.json").unlink()
    code, _, err = run_main(["weights", "import-hallo", str(download), "--out", str(tmp_path / "w"),
                             "--variant", "hallo"], monkeypatch, capsys)  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert "Kim_Vocal_2.onnx" in err and "sd-vae-ft-mse/config.json" in err
    code, _, err = run_main(["weights", "import-hallo", str(download), "--out", str(tmp_path / "w"),
                             "--variant", "hallo2"], monkeypatch, capsys)  # fmt: skip
    assert code != 0 and "hallo2/net.pth" in err
    assert not (tmp_path / "w").exists()


def test_missing_and_misshapen_keys_are_all_named(reference, tmp_path, monkeypatch, capsys):
    net = {f"{p}.{k}": v for p in MODULE_FILES for k, v in reference.states[p].items()}
    del net["denoising_unet.up_blocks.1.audio_modules.0.transformer_blocks.0.attn2_1.to_k.weight"]
    del net["face_locator.blocks.2.bias"]
    net["audioproj.proj2.weight"] = torch.zeros(3, 3)
    net["denoising_unet.up_blocks.2.motion_modules.0.temporal_transformer.proj_in.weight"] = torch.zeros(2, 2)
    net["stray.weight"] = torch.zeros(1)
    download = tmp_path / "pretrained_models"
    config = write_download(download, reference, net=net)
    code, _, err = run_main(["weights", "import-hallo", str(download), "--out", str(tmp_path / "w"),
                             "--hallo-config", str(config)], monkeypatch, capsys)  # fmt: skip
    assert code != 0 and "Traceback" not in err
    for name in ("denoising_unet.up_blocks.1.audio_modules.0.transformer_blocks.0.attn2_1.to_k.weight: missing",
                 "face_locator.blocks.2.bias: missing", "audioproj.proj2.weight: shape (3, 3)",
                 "denoising_unet.up_blocks.2.motion_modules.0.temporal_transformer.proj_in.weight: shape (2, 2)",
                 "stray.weight"):  # fmt: skip
        assert name in err, name
    assert "5 problems" in err
    assert not (tmp_path / "w").exists()


def test_paths_are_checked_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom emo_cli.cli import main\nsys.argv = ['emo', 'weights', 'import-hallo', sys.argv[1], "
            "'--out', sys.argv[2]]\ntry:\n    main()\nexcept SystemExit as exc:\n    assert exc.code != 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nothing"), str(tmp_path / "w")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no such folder" in proc.stderr and "hf download fudan-generative-ai/hallo" in proc.stderr
