"""Which devices a local render uses: `--devices auto | cuda | cuda:0,1,3 | cpu | cpu:N`.

Each device gets one worker process. A GPU worker sees only its own GPU (CUDA_VISIBLE_DEVICES
names it alone); a CPU worker sees none and gets a share of the cores. GPUs are found without
importing torch: from CUDA_VISIBLE_DEVICES when it is set (Slurm and Kubernetes set it), else
from `nvidia-smi -L`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from emo_cli.errors import UsageError

MAX_AUTO_CPU_WORKERS = 8  # more CPU workers than this mostly fight over memory bandwidth
MAX_CPU_WORKERS = 256
_SPEC_HELP = "use auto, cuda, cuda:0,1,3, cpu or cpu:N"


@dataclass(frozen=True)
class Device:
    """One worker's device: a single GPU or a share of the CPU."""

    kind: str  # "cuda" or "cpu"
    index: int  # cuda: the GPU ordinal asked for (cuda:3 -> 3); cpu: the worker number
    visible_id: str = ""  # for cuda: what CUDA_VISIBLE_DEVICES must say (an ordinal or a UUID)
    threads: int = 1  # for cpu: how many cores this worker may use

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.index}"

    @property
    def env(self) -> dict[str, str]:
        """Environment a worker for this device needs, set before anything imports CUDA."""
        if self.kind == "cuda":
            return {"CUDA_VISIBLE_DEVICES": self.visible_id}
        threads = str(self.threads)
        return {
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
        }

    def __str__(self) -> str:
        return self.name


def visible_gpus() -> list[str]:
    """IDs of the CUDA GPUs this process may use, as CUDA_VISIBLE_DEVICES would name them.

    CUDA_VISIBLE_DEVICES wins when set ("" or "-1" mean none); otherwise `nvidia-smi -L` is
    asked (absent or failing means none). MIG slices are used only when named in
    CUDA_VISIBLE_DEVICES.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [part.strip() for part in env.split(",") if part.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        out: list[str] = []
        for part in ids:
            if part.startswith("-"):
                break
            out.append(part)
        return out
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    ids = []
    for line in proc.stdout.splitlines():
        match = re.match(r"GPU (\d+):", line)
        if match:
            ids.append(match.group(1))
    return ids


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, which Slurm and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_devices(spec: str, *, gpus: Sequence[str] | None = None, cpus: int | None = None) -> list[Device]:
    """The devices named by a `--devices` value.

    Args:
        spec: `auto` (every visible GPU, else CPU workers), `cuda` (every visible GPU),
            `cuda:0,1,3` (those GPUs, numbered as CUDA_VISIBLE_DEVICES or nvidia-smi number
            them), `cpu` (one CPU worker) or `cpu:N` (N CPU workers).
        gpus: visible GPU ids, found with `visible_gpus()` when None.
        cpus: usable cores, found with `usable_cpus()` when None.
    """
    text = spec.strip().lower()
    if not text:
        raise UsageError(f"--devices is empty: {_SPEC_HELP}")
    kind, _, rest = text.partition(":")
    if kind == "auto" and not rest:
        found = visible_gpus() if gpus is None else list(gpus)
        if found:
            return _cuda_devices(found, range(len(found)))
        total = usable_cpus() if cpus is None else cpus
        return _cpu_devices(min(total, MAX_AUTO_CPU_WORKERS), total)
    if kind == "cpu":
        return _parse_cpu(spec, rest, usable_cpus() if cpus is None else cpus)
    if kind == "cuda":
        return _parse_cuda(spec, rest, visible_gpus() if gpus is None else list(gpus))
    raise UsageError(f"--devices {spec}: unknown device; {_SPEC_HELP}")


def _parse_cpu(spec: str, rest: str, total: int) -> list[Device]:
    """`cpu` (one worker) or `cpu:N`."""
    if not rest:
        return _cpu_devices(1, total)
    if not re.fullmatch(r"\d+", rest) or not 1 <= int(rest) <= MAX_CPU_WORKERS:
        raise UsageError(
            f"--devices {spec}: the number of CPU workers must be a whole number from 1 to {MAX_CPU_WORKERS}"
        )
    return _cpu_devices(int(rest), total)


def _parse_cuda(spec: str, rest: str, found: Sequence[str]) -> list[Device]:
    """`cuda` (every visible GPU) or `cuda:0,1,3`."""
    if not found:
        raise UsageError(
            f"--devices {spec}: no CUDA GPU is visible (CUDA_VISIBLE_DEVICES is unset or empty and "
            "nvidia-smi lists none); use --devices cpu or check the driver"
        )
    if not rest:
        return _cuda_devices(found, range(len(found)))
    parts = rest.split(",")
    if not all(re.fullmatch(r"\d+", p.strip()) for p in parts):
        raise UsageError(f"--devices {spec}: GPU numbers must be whole numbers such as cuda:0,1,3")
    ordinals = [int(p) for p in parts]
    dupes = sorted({o for o in ordinals if ordinals.count(o) > 1})
    if dupes:
        raise UsageError(f"--devices {spec}: GPU {dupes[0]} is named twice")
    missing = [o for o in ordinals if o >= len(found)]
    if missing:
        raise UsageError(
            f"--devices {spec}: there is no GPU {missing[0]}; {len(found)} visible (0..{len(found) - 1})"
        )
    return _cuda_devices(found, ordinals)


def _cuda_devices(found: Sequence[str], ordinals: Sequence[int]) -> list[Device]:
    return [Device(kind="cuda", index=o, visible_id=found[o]) for o in ordinals]


def _cpu_devices(count: int, total_cpus: int) -> list[Device]:
    threads = max(1, total_cpus // count)
    return [Device(kind="cpu", index=i, threads=threads) for i in range(count)]
