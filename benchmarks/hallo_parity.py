"""Numerical parity of emo-cli's Hallo mode with Hallo's own code, stage by stage.

Reads a reference set in the format of the project's shared `hallo-reference/` (configs.json,
Hallo's state dicts, inputs, Hallo's outputs and intermediates), builds our modules from those
state dicts through the importer's renaming (sizes from configs.json), runs our pipeline in
Hallo mode on every run of configs.json (`run`, `run_128`, ...) with Hallo's initial latents,
and the variants of output_variants.safetensors (motion_scale; the denoising UNet in eval
mode, through the `hallo_eval_mode` switch), and prints the max |difference|
per stage with PASS/FAIL. Exits 1 if any stage fails.

Tolerances (max |ours - Hallo's|): identity/audio projections and face locator 1e-5, each
ReferenceNet bank 1e-4, each step's UNet output and the latents 1e-3, decoded video 5e-4.
For scale: Hallo's own code differs from itself by about 9e-5 (UNet outputs), 3e-4 (latents)
and 1e-4 (video) between 1 and 2 threads on the same build (determinism.json); ours runs
another diffusers and torch, with its own operation order. The eval-mode variant gets 1e-2 on
the video, twice its float32 rounding sensitivity: it is ill-conditioned (Hallo's own
1-vs-2-thread spread is 5e-4 there, and this code run in float64 instead of float32 moves its
video by 4.7e-3; float64 lands 1.3e-3 from Hallo's video).

    python benchmarks/hallo_parity.py --reference ../shared/hallo-reference
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL_MODE = {"hallo_eval_mode": True, "plain_block_temporal": True}  # Hallo's UNet in eval mode
EVAL_MODE_TOLERANCES = {"video": 1e-2}  # see the module docstring


def parse_motion_scale(key: str) -> tuple[float, float, float] | None:
    """`video_motion_scale_1_0.5_2` -> (1.0, 0.5, 2.0)."""
    m = re.fullmatch(r"video_motion_scale_([-0-9.e]+)_([-0-9.e]+)_([-0-9.e]+)", key)
    return tuple(float(v) for v in m.groups()) if m else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a folder in the hallo-reference format")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the reference used 2)")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(REPO))
    from emo_cli.backends.emo.hallo_reference import (
        ReferenceSet,
        build_pipeline,
        compare,
        expected_outputs,
        run_overrides,
        run_reference,
    )

    torch.set_num_threads(args.threads)
    if not (args.reference / "configs.json").is_file():
        print(f"{args.reference}: no configs.json; not a Hallo reference set", file=sys.stderr)
        return 2
    ref = ReferenceSet.load(args.reference)
    failed = 0
    pipelines: dict = {}

    def pipeline_for(run: str):
        key = tuple(sorted(run_overrides(ref, run).items()))
        if key not in pipelines:
            pipelines[key] = build_pipeline(ref, dict(key))
        return pipelines[key]

    def report(title: str, results) -> None:
        nonlocal failed
        print(f"\n{title}")
        print(f"  {'stage':62s} {'max |diff|':>11s} {'tolerance':>10s}")
        for r in results:
            failed += not r.ok
            print(f"  {r.name:62s} {r.max_diff:11.3e} {r.tolerance:10.1e}  {'PASS' if r.ok else 'FAIL'}")
        if not results:
            failed += 1
            print("  nothing to compare: FAIL")

    for run in ref.runs():
        settings = ref.configs[run]
        start = time.perf_counter()
        trace = run_reference(pipeline_for(run), ref, run)
        took = time.perf_counter() - start
        title = (f"{run}: {settings['width']}x{settings['height']}, {settings['clip_length']} frames, "
                 f"{settings['num_inference_steps']} steps, guidance {settings['guidance_scale']}, "
                 f"motion_scale {settings['motion_scale']} ({took:.2f} s)")  # fmt: skip
        report(title, compare(trace, expected_outputs(ref, run)))

    variants = ref.tensors("output_variants")
    for key in sorted(variants):
        scale = parse_motion_scale(key)
        if scale is not None:
            trace = run_reference(pipeline_for("run"), ref, "run", motion_scale=scale)
            title = f"{key}: the main run with motion_scale {list(scale)}"
        elif key == "video_denoising_unet_eval_mode":
            pipeline = build_pipeline(ref, dict(run_overrides(ref, "run"), **EVAL_MODE))
            trace = run_reference(pipeline, ref, "run")
            title = f"{key}: the main run with the denoising UNet in eval mode (hallo_eval_mode)"
        else:
            print(f"\n{key}: skipped (a variant this script does not know)")
            continue
        tolerances = EVAL_MODE_TOLERANCES if key == "video_denoising_unet_eval_mode" else None
        results = [r for r in compare(trace, variants, tolerances, video_key=key) if r.name == "video"]
        report(title, results)

    print(f"\n{'PASS' if not failed else f'FAIL ({failed} stages)'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
