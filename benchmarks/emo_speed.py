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

`--model hallo` times the Hallo layout (weights imported with `emo weights import-hallo`) at
SD1.5 size with default-initialised weights, one clip after the first (its motion frames are the
previous clip's last two decoded frames), against `naive`, the per-clip work of Hallo's own code
(the ReferenceNet over all 2 x 3 rows to its end, the portrait VAE-encoded again every clip), with
the split into denoising UNet, ReferenceNet, VAE encode and VAE decode (seconds of the clip).
"CPU s/frame" is the process's CPU time: on an idle machine with 2 threads, about twice the wall
time; on a shared one, the least disturbed figure:

    python benchmarks/emo_speed.py --model hallo   # CPU: 256x256, 4 + 2 motion frames, 1 step, CFG, fp32, 2 threads
    python benchmarks/emo_speed.py --model hallo --device cuda   # 512x512, 16 frames, 40 steps, fp16 and bf16

The CPU figures print beside those the project's hallo-reference README gives for Hallo's own
code at the same settings on a 2-core CPU (8.3-8.7 s/frame). Full size needs about 10 GiB RAM.
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


# Hallo's code at the CPU settings below, 2-core AMD EPYC, fp32 (hallo-reference/fullsize_timing.json):
HALLO_CODE_CPU = {"s_per_frame": (8.3, 8.7), "denoising_unet": (16.1, 17.3), "reference_unet": (4.8, 4.8),
                  "vae_encode": (5.0, 5.0), "vae_decode": (6.9, 7.5)}  # fmt: skip
HALLO_SETTINGS = {
    "cpu": {"resolution": 256, "frames": 4, "steps": 1, "dtypes": ["float32"]},
    "cuda": {"resolution": 512, "frames": 16, "steps": 40, "dtypes": ["float16", "bfloat16"]},
}
SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
    "norm_num_groups": 32, "norm_eps": 1e-5, "act_fn": "silu", "downsample_padding": 1, "flip_sin_to_cos": True,
    "freq_shift": 0, "mid_block_scale_factor": 1, "center_input_sample": False,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}  # fmt: skip
SD_VAE = {  # sd-vae-ft-mse
    "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "sample_size": 256,
}  # fmt: skip
HALLO_SMALL = {  # Hallo's own sizes (scripts/inference.py)
    "face_locator": {"in_channels": 3, "block_out_channels": [16, 32, 64, 128], "out_channels": 320},
    "audio_proj": {"window": 5, "layers": 12, "feature_dim": 768, "hidden_dim": 512, "tokens": 32, "context_dim": 768,
                   "activation": "relu"},
    "image_proj": {"embedding_dim": 512, "tokens": 4, "context_dim": 768},
}  # fmt: skip


def build_hallo(device, dtype):
    """Hallo's model at full size, default-initialised, as `EmoPipeline` (weights import not needed)."""
    import torch
    from diffusers import AutoencoderKL

    from emo_cli.backends.emo.hallo_import import HALLO_SCHEDULER, HALLO_UNET_KWARGS, build_modules
    from emo_cli.backends.emo.pipeline import EmoModel, EmoPipeline

    torch.manual_seed(0)
    with torch.device(device):
        modules = build_modules(SD15_UNET, HALLO_UNET_KWARGS, HALLO_SMALL)
        vae = AutoencoderKL(**SD_VAE)
    model = EmoModel(
        reference_unet=modules["reference_unet"], backbone=modules["denoising_unet"],
        face_locator=modules["face_locator"], audio_proj=modules["audioproj"], speed_encoder=None,
        identity_proj=modules["imageproj"], vae=vae, audio_encoder=None, scheduler_config=dict(HALLO_SCHEDULER),
        kind="hallo",
    )  # fmt: skip
    for part in model.parts().values():
        part.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return EmoPipeline(model)


def measure_hallo(variant: str, clips: int, device_name: str, threads: int, dtype_name: str) -> dict:
    """Time `clips` Hallo clips after a first one, with the split per network."""
    import numpy as np
    import torch

    if threads and device_name.startswith("cpu"):
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    settings = HALLO_SETTINGS["cuda" if device.type == "cuda" else "cpu"]
    dtype = getattr(torch, dtype_name)
    began = time.perf_counter()
    pipeline = build_hallo(device, dtype)
    build_s = time.perf_counter() - began
    res, f = settings["resolution"], settings["frames"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (res, res, 3), dtype=np.uint8)
    region = np.zeros((res, res, 3), dtype=np.uint8)
    region[res // 5 : 4 * res // 5, res // 4 : 3 * res // 4] = 255
    masks = {kind: [rng.random((res // 8 // 2**level) ** 2) for level in range(4)] for kind in ("full", "face", "lip")}
    portrait = pipeline.prepare_hallo(image=image, face_region=region, identity=rng.normal(0, 20, 512), masks=masks)
    audio = torch.from_numpy(rng.normal(0, 1, (f, 5, 12, 768)).astype(np.float32))

    split: dict[str, float] = {}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                split[name] = split.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    pipeline.backbone.forward = timed("denoising_unet", pipeline.backbone.forward)
    pipeline.recorder.record = timed("reference_unet", pipeline.recorder.record)
    pipeline.encode_pixels = timed("vae_encode", pipeline.encode_pixels)
    pipeline.decode_unit = timed("vae_decode", pipeline.decode_unit)

    def one_clip(index: int, motion):
        return pipeline.hallo_clip(portrait, audio, motion, generator=torch.Generator().manual_seed(index),
                                   steps=settings["steps"], guidance_scale=3.5, naive=variant == "naive")  # fmt: skip

    clip = one_clip(0, None)  # the first clip (warm-up): its motion frames are the portrait
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    wall, cpu, splits = [], [], []
    for index in range(1, clips + 1):
        split.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        clip = one_clip(index, clip.motion)
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        splits.append(dict(split))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        where = torch.cuda.get_device_name(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = f"CPU ({torch.get_num_threads()} threads)"
    best = min(range(len(wall)), key=wall.__getitem__)
    return {"variant": variant, "s_per_frame": wall[best] / f, "median_s_per_frame": sorted(wall)[len(wall) // 2] / f,
            "split": splits[best], "clip_s": wall[best], "cpu_s_per_frame": cpu[best] / f, "peak_mib": peak, "device": where, "dtype": dtype_name,
            "resolution": res, "frames": f, "steps": settings["steps"], "build_s": build_s}  # fmt: skip


def hallo_main(args) -> int:
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    settings = HALLO_SETTINGS[device_type]
    threads = 2 if args.threads is None else args.threads  # the reference's 2 threads
    rows = []
    for dtype_name in settings["dtypes"]:
        for variant in ("emo-cli", "naive"):
            cmd = [sys.executable, __file__, "--model", "hallo", "--clips", str(args.clips), "--device", args.device,
                   "--threads", str(threads), "--variant", variant, "--dtype", dtype_name]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
            if out.returncode:
                sys.stderr.write(out.stderr)
                return out.returncode
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"Hallo layout at SD1.5 size: {first['resolution']}x{first['resolution']}, {first['frames']} frames + 2 "
          f"motion frames, {first['steps']} step(s), CFG 3.5, on {first['device']} (model built in "
          f"{first['build_s']:.0f} s)")  # fmt: skip
    parts = ("denoising_unet", "reference_unet", "vae_encode", "vae_decode")
    print(f"{'variant':<10} {'dtype':<9} {'s/frame':>8} {'CPU s/frame':>11} "
          + " ".join(f"{p:>15}" for p in parts) + f" {'peak MiB':>9}")  # fmt: skip
    for row in rows:
        print(f"{row['variant']:<10} {row['dtype']:<9} {row['s_per_frame']:>8.2f} {row['cpu_s_per_frame']:>11.2f} "
              + " ".join(f"{row['split'].get(p, 0.0):>15.2f}" for p in parts) + f" {row['peak_mib']:>9.0f}")  # fmt: skip
    if device_type == "cpu":
        ref = HALLO_CODE_CPU
        print(f"{'Hallo code':<10} {'float32':<9} {ref['s_per_frame'][0]:>4.1f}-{ref['s_per_frame'][1]:<3.1f} {'':>11} "
              + " ".join(f"{ref[p][0]:>10.1f}-{ref[p][1]:<4.1f}" for p in parts)
              + "  (hallo-reference README, same settings, 2-core CPU)")  # fmt: skip
    for dtype_name in settings["dtypes"]:
        ours, naive = (next(r for r in rows if r["variant"] == v and r["dtype"] == dtype_name) for v in ("emo-cli", "naive"))
        line = f"{dtype_name}: emo-cli is {naive['s_per_frame'] / ours['s_per_frame']:.2f}x the naive per-clip work"
        if device_type == "cpu":
            line += f", {HALLO_CODE_CPU['s_per_frame'][0] / ours['s_per_frame']:.2f}x Hallo's code's best figure"
        print(line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=None, help="default: full on CUDA, small on CPU"
    )
    parser.add_argument(
        "--clips", type=int, default=None, help="timed clips per variant, after one warm-up clip (default 3; hallo 1)"
    )
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default 1, hallo 2: on a shared machine, busy-waiting threads of a "
                             "descheduled peer inflate both wall and CPU time); 0 = torch's default")  # fmt: skip
    parser.add_argument("--model", choices=["emo", "hallo"], default="emo",
                        help="emo (default) or the Hallo layout at SD1.5 size (see above)")  # fmt: skip
    parser.add_argument("--variant", choices=["emo-cli", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.model == "hallo":
        args.clips = args.clips or 1
        if args.variant:
            print(json.dumps(measure_hallo(args.variant, args.clips, args.device, args.threads, args.dtype)))
            return 0
        return hallo_main(args)
    args.clips = args.clips or 3
    args.threads = 1 if args.threads is None else args.threads
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
