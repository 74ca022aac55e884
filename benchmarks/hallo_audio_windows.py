"""How far Hallo-mode's windowed wav2vec features are from Hallo's whole-file grid.

Hallo runs wav2vec 2.0 once over the whole (normalised, padded) file. For long audio emo-cli
computes the same grid block by block with some context either side (`HalloAudio`, mode
"windowed"), which bounds memory; the grid positions are Hallo's, so what differs is only the
CNN's group-norm statistics and the span the transformer attends over. This prints, for a few
context sizes, the max and mean |windowed - whole| over all layers and frames, and the mean
relative to the mean |whole|.

    python benchmarks/hallo_audio_windows.py                        # wav2vec2-base layout, random weights
    python benchmarks/hallo_audio_windows.py --wav2vec DIR          # real weights (wav2vec2-base-960h)
    python benchmarks/hallo_audio_windows.py --seconds 60 --contexts 25 50 100

The audio is the project's English speech sample, looped to `--seconds`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wav2vec", type=Path, help="a wav2vec 2.0 folder (config.json + weights)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--block", type=int, default=250, help="block length in frames (25 fps)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[12, 25, 50, 100])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    sys.path.insert(0, str(REPO))
    from emo_cli.backends.emo.audio import HalloAudio
    from emo_cli.media.audio import decode_audio

    torch.set_num_threads(args.threads)
    if args.wav2vec:
        encoder, source = Wav2Vec2Model.from_pretrained(args.wav2vec).eval(), str(args.wav2vec)
    else:
        torch.manual_seed(0)
        encoder, source = Wav2Vec2Model(Wav2Vec2Config()).eval(), "wav2vec2-base layout, random weights"
    speech = decode_audio(REPO / "manifests" / "assets" / "hello_en.wav", 16000)
    audio = np.resize(speech, int(args.seconds * 16000)).astype(np.float32)

    common = {"sample_rate": 16000, "fps": 25, "clip_frames": 16}
    whole = HalloAudio(encoder, audio, mode="whole", **common)
    reference = whole.frames_range(0, whole.padded_frames)
    scale = reference.abs().mean().item()
    print(f"encoder: {source}; audio: {args.seconds:g} s of looped speech, {whole.padded_frames} frames; "
          f"block {args.block} frames")  # fmt: skip
    print(f"{'context (frames)':>17} {'max |diff|':>11} {'mean |diff|':>12} {'mean rel.':>10}")
    for context in args.contexts:
        windowed = HalloAudio(
            encoder, audio, mode="windowed", block_frames=args.block, context_frames=context, **common
        )
        diff = (windowed.frames_range(0, windowed.padded_frames) - reference).abs()
        print(
            f"{context:>17} {diff.max().item():>11.4g} {diff.mean().item():>12.4g} {diff.mean().item() / scale:>10.3%}"
        )


if __name__ == "__main__":
    main()
