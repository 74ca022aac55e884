"""`--devices`: parsing, GPU discovery without torch, and the fallback to CPU workers."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from emo_cli.errors import UsageError
from emo_cli.execution.devices import MAX_AUTO_CPU_WORKERS, parse_devices, visible_gpus

NVIDIA_SMI_TWO_GPUS = """#!/bin/sh
[ "$1" = "-L" ] || exit 2
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)"
echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-66666666-7777-8888-9999-000000000000)"
echo "  MIG 1g.10gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)"
"""


def fake_path(tmp_path, monkeypatch, script: str | None) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if script is not None:
        exe = bin_dir / "nvidia-smi"
        exe.write_text(script)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_auto_without_gpus_falls_back_to_capped_cpu_workers(tmp_path, monkeypatch):
    fake_path(tmp_path, monkeypatch, None)
    assert visible_gpus() == []
    devices = parse_devices("auto", cpus=4)
    assert [d.name for d in devices] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert all(d.kind == "cpu" and d.env["CUDA_VISIBLE_DEVICES"] == "" for d in devices)
    assert devices[0].env["OMP_NUM_THREADS"] == "1"
    assert len(parse_devices("auto", cpus=64)) == MAX_AUTO_CPU_WORKERS
    assert len(parse_devices("auto")) == min(len(os.sched_getaffinity(0)), MAX_AUTO_CPU_WORKERS)


def test_auto_finds_gpus_with_nvidia_smi(tmp_path, monkeypatch):
    fake_path(tmp_path, monkeypatch, NVIDIA_SMI_TWO_GPUS)
    devices = parse_devices("auto")
    assert [(d.name, d.kind, d.env) for d in devices] == [
        ("cuda:0", "cuda", {"CUDA_VISIBLE_DEVICES": "0"}),
        ("cuda:1", "cuda", {"CUDA_VISIBLE_DEVICES": "1"}),
    ]


def test_gpu_discovery_does_not_import_torch(tmp_path, monkeypatch):
    import subprocess

    fake_path(tmp_path, monkeypatch, NVIDIA_SMI_TWO_GPUS)
    code = (
        "import sys; from emo_cli.execution.devices import parse_devices; "
        "print(len(parse_devices('auto')), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "False"]


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    fake_path(tmp_path, monkeypatch, "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert [d.kind for d in parse_devices("auto", cpus=2)] == ["cpu", "cpu"]


def test_cuda_visible_devices_wins_and_names_what_each_worker_sees(tmp_path, monkeypatch):
    fake_path(tmp_path, monkeypatch, NVIDIA_SMI_TWO_GPUS)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,GPU-abc")
    assert visible_gpus() == ["2", "3", "GPU-abc"]
    assert [d.env["CUDA_VISIBLE_DEVICES"] for d in parse_devices("cuda:0,2")] == ["2", "GPU-abc"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert parse_devices("auto", cpus=1)[0].kind == "cpu"


def test_explicit_specs():
    four = ["0", "1", "2", "3"]
    assert [d.name for d in parse_devices("cuda:0,1,3", gpus=four)] == ["cuda:0", "cuda:1", "cuda:3"]
    assert [d.env["CUDA_VISIBLE_DEVICES"] for d in parse_devices("cuda:0,1,3", gpus=four)] == ["0", "1", "3"]
    assert [d.name for d in parse_devices("cuda", gpus=four[:2])] == ["cuda:0", "cuda:1"]
    assert [d.name for d in parse_devices(" CPU ", cpus=8)] == ["cpu:0"]
    assert parse_devices("cpu", cpus=8)[0].env["OMP_NUM_THREADS"] == "8"
    three = parse_devices("cpu:3", cpus=8)
    assert [d.name for d in three] == ["cpu:0", "cpu:1", "cpu:2"]
    assert three[0].env["OMP_NUM_THREADS"] == "2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "--devices is empty"),
        ("gpu:0", "unknown device; use auto, cuda, cuda:0,1,3, cpu or cpu:N"),
        ("auto:2", "unknown device"),
        ("cpu:0", "whole number from 1 to 256"),
        ("cpu:two", "whole number from 1 to 256"),
        ("cuda:0,x", "GPU numbers must be whole numbers"),
        ("cuda:1,1", "GPU 1 is named twice"),
        ("cuda:0,5", r"there is no GPU 5; 2 visible \(0..1\)"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_devices(spec, gpus=["0", "1"], cpus=2)


def test_asking_for_cuda_without_a_gpu_is_a_usage_error():
    with pytest.raises(UsageError, match="no CUDA GPU is visible"):
        parse_devices("cuda:0", gpus=[])
