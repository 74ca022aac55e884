"""Seconds per frame and peak memory of the EMO pipeline, against the naive loop.

Builds the model with random weights (no download) and renders clips of f = 12 frames with CFG:

* `emo-cli`: ReferenceNet once per clip, both CFG branches in one batched backbone pass;
* `naive`:   ReferenceNet again at every denoising step, CFG as two backbone passes.

Each variant runs in its own process (peak RSS on CPU, peak allocated memory on CUDA), one
warm-up clip then `--clips` timed clips (audio features + denoising + VAE decode), and reports
the best and the median clip (wall time) and the best clip's process CPU time: on a shared
machine the best clip and the CPU time are the least disturbed figures.

    python benchmarks/emo_speed.py                 # small config on the CPU
    python benchmarks/emo_speed.py --size full     # SD1.5 size, 512x512, 40 steps; bf16 + SDPA on CUDA
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SIZES = {
    # The test-suite's toy model, at a size a CPU renders in seconds.
    "small": {"resolution": 64, "steps": 8, "unet": (32, 64), "layers": 1, "heads": 4, "cross": 32, "vae": (16,) * 4,
              "wav2vec": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "intermediate_size": 64}, "tokens": 4, "hidden": 32},
    # SD1.5 + AnimateDiff v1-5-2 + sd-vae-ft-mse + wav2vec2-base sizes.
    "full": {"resolution": 512, "steps": 40, "unet": (320, 640, 1280, 1280), "layers": 2, "heads": 8, "cross": 768,
             "vae": (128, 256, 512, 512), "wav2vec": {}, "tokens": 32, "hidden": 512},
}  # fmt: skip


def build_pipeline(size: dict, device, dtype):
    import torch

    torch.manual_seed(0)
    with torch.device(device):  # build on the GPU directly when there is one
        return _build(size, device, dtype)


def _build(size: dict, device, dtype):
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emo_cli.backends.emo.assemble import assemble_model
    from emo_cli.backends.emo.pipeline import EmoPipeline

    blocks = size["unet"]
    down = ("CrossAttnDownBlock2D",) * (len(blocks) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(blocks) - 1)
    groups = 32 if blocks[0] >= 64 else 16
    unet = UNet2DConditionModel(
        sample_size=size["resolution"] // 8, block_out_channels=blocks, layers_per_block=size["layers"],
        down_block_types=down, up_block_types=up, cross_attention_dim=size["cross"],
        attention_head_dim=size["heads"], norm_num_groups=groups,
    )  # fmt: skip
    adapter = MotionAdapter(block_out_channels=blocks, motion_layers_per_block=size["layers"],
                            motion_norm_num_groups=groups, motion_num_attention_heads=8 if groups == 32 else 2)  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=size["vae"], down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2 if groups == 32 else 1,
        norm_num_groups=32 if groups == 32 else 8,
    )  # fmt: skip
    audio = Wav2Vec2Model(Wav2Vec2Config(**size["wav2vec"]))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1)  # fmt: skip
    model = assemble_model(unet, scheduler, vae, adapter, audio, audio_tokens=size["tokens"],
                           hidden_dim=size["hidden"])  # fmt: skip
    for part in model.parts().values():
        part.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return EmoPipeline(model)


def measure(size_name: str, variant: str, clips: int, device_name: str, threads: int) -> dict:
    import numpy as np
    import torch

    if threads and device_name.startswith("cpu"):
        torch.set_num_threads(threads)
    from emo_cli.backends.emo.audio import AudioFeatures
    from emo_cli.backends.emo.pipeline import resolve_dtype

    size = SIZES[size_name]
    device = torch.device(device_name)
    dtype = resolve_dtype("auto", device)
    pipeline = build_pipeline(size, device, dtype)
    res, f, fps = size["resolution"], 12, 25
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (res, res, 3), dtype=np.uint8)
    mask = np.zeros((res, res), dtype=np.float32)
    mask[res // 5 : 4 * res // 5, res // 4 : 3 * res // 4] = 1
    frames = f * (clips + 1)
    audio = rng.normal(0, 0.2, int(16000 * frames / fps)).astype(np.float32)
    features = AudioFeatures(pipeline.model.audio_encoder, audio, sample_rate=16000, fps=fps, num_frames=frames,
                             layers=int(pipeline.model.audio_proj.config.layers))  # fmt: skip
    reference = pipeline.encode_reference(image)
    face = pipeline.face_features(mask)
    motion = pipeline.first_motion(reference, pipeline.motion_frames)

    def one_clip(index: int):
        latents = pipeline.generate_clip(
            reference_latent=reference, motion_latents=motion, audio_features=features.window(index * f, f, 2),
            face_features=face, speed=0.04, generator=torch.Generator().manual_seed(index), steps=size["steps"],
            guidance_scale=3.5, naive=variant == "naive",
        )  # fmt: skip
        return pipeline.decode(latents)

    one_clip(0)  # warm-up: kernel selection, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = [], []
    for index in range(1, clips + 1):
        began, began_cpu = time.perf_counter(), time.process_time()
        one_clip(index)  # decode copies the frames to the host, which waits for the GPU
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        where = torch.cuda.get_device_name(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        count = torch.get_num_threads()
        where = f"CPU ({count} thread{'s' if count != 1 else ''})"
    wall.sort()
    return {"variant": variant, "best_s_per_frame": wall[0] / f, "median_s_per_frame": wall[len(wall) // 2] / f,
            "cpu_s_per_frame": min(cpu) / f, "peak_mib": peak, "device": where,
            "dtype": str(dtype).replace("torch.", ""), "resolution": res, "steps": size["steps"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=None, help="default: full on CUDA, small on CPU"
    )
    parser.add_argument(
        "--clips", type=int, default=3, help="timed clips per variant (after one warm-up clip)"
    )
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: on a shared machine, busy-waiting threads of a "
                             "descheduled peer inflate both wall and CPU time); 0 = torch's default")  # fmt: skip
    parser.add_argument("--variant", choices=["emo-cli", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    size = args.size or ("full" if args.device.startswith("cuda") else "small")
    if args.variant:
        print(json.dumps(measure(size, args.variant, args.clips, args.device, args.threads)))
        return 0
    rows = []
    for variant in ("emo-cli", "naive"):
        cmd = [sys.executable, __file__, "--size", size, "--clips", str(args.clips), "--device", args.device,
               "--threads", str(args.threads), "--variant", variant]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        if out.returncode:
            sys.stderr.write(out.stderr)
            return out.returncode
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"EMO pipeline, {size} config: {first['resolution']}x{first['resolution']}, {first['steps']} steps, "
          f"CFG 3.5, clips of 12 frames, {first['dtype']} on {first['device']}")  # fmt: skip
    print(f"{'variant':<10} {'best s/frame':>13} {'median s/frame':>15} {'CPU s/frame':>12} {'peak MiB':>9}")
    for row in rows:
        print(f"{row['variant']:<10} {row['best_s_per_frame']:>13.3f} {row['median_s_per_frame']:>15.3f} "
              f"{row['cpu_s_per_frame']:>12.3f} {row['peak_mib']:>9.0f}")  # fmt: skip
    speedup = rows[1]["best_s_per_frame"] / rows[0]["best_s_per_frame"]
    print(f"speed-up of emo-cli over naive (best clips): {speedup:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
