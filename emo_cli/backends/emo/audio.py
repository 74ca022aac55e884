"""wav2vec 2.0 features aligned to the video frame rate: EMO's windows and Hallo's grid.

`AudioFeatures` (EMO weights) computes each clip's features from the audio around it.
`HalloAudio` (Hallo weights) reproduces Hallo's grid; see its docstring.

EMO weights:

The CNN features of wav2vec 2.0 (50 per second) are interpolated to the video frame count
before the transformer, so every hidden state has exactly one row per video frame; the last
`layers` hidden states are stacked per frame. Each clip's features come from the audio around
it (the clip, +-m frames, plus `context_seconds` either side), which keeps memory constant for
any duration and makes a clip's features a pure function of the audio and its frame range.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MIN_SAMPLES = 1600  # 0.1 s at 16 kHz


class AudioFeatures:
    """Windowed per-frame wav2vec 2.0 features of one job's audio."""

    def __init__(
        self,
        encoder,
        audio: np.ndarray,
        *,
        sample_rate: int,
        fps: int,
        num_frames: int,
        layers: int,
        normalize: bool = True,
        context_seconds: float = 2.0,
    ) -> None:
        self.encoder = encoder
        samples = np.asarray(audio, dtype=np.float32)
        if normalize and samples.size:
            # wav2vec2-base-960h was trained on zero-mean, unit-variance utterances.
            samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
        self.audio = samples
        self.samples_per_frame = sample_rate / fps
        self.num_frames = num_frames
        self.layers = layers
        self.context = int(round(context_seconds * fps))

    @torch.no_grad()
    def frames(self, lo: int, hi: int) -> torch.Tensor:
        """Features of frames [lo, hi): (hi - lo, layers, dim), float32 on the encoder's device."""
        count = hi - lo
        # wav2vec 2.0's first conv needs 400 samples; a very short window is zero-padded at the
        # end to MIN_SAMPLES and its features cut back to `count` frames.
        padded = max(count, int(np.ceil(MIN_SAMPLES / self.samples_per_frame)))
        a, b = int(round(lo * self.samples_per_frame)), int(round((lo + padded) * self.samples_per_frame))
        b_audio = int(round(hi * self.samples_per_frame))
        chunk = np.zeros(b - a, dtype=np.float32)
        src = self.audio[max(a, 0) : max(min(b_audio, self.audio.size), 0)]
        chunk[max(-a, 0) : max(-a, 0) + src.size] = src
        param = next(self.encoder.parameters())
        wave = torch.from_numpy(chunk)[None].to(param.device, param.dtype)

        def to_frame_rate(module, args, output):
            return F.interpolate(output, size=padded, mode="linear", align_corners=True)

        handle = self.encoder.feature_extractor.register_forward_hook(to_frame_rate)
        try:
            states = self.encoder(wave, output_hidden_states=True).hidden_states
        finally:
            handle.remove()
        return torch.stack(states[-self.layers :], dim=2)[0, :count].float()

    def window(self, start: int, count: int, m: int) -> torch.Tensor:
        """Per frame of [start, start + count): its features and those of +-m frames around it.

        Returns (count, 2m + 1, layers, dim). Frames outside the audio repeat the first or last.
        """
        last = self.num_frames - 1
        lo = max(0, start - m - self.context)
        hi = min(self.num_frames, start + count + m + self.context)
        lo, hi = min(lo, last), max(hi, min(last, start) + 1)
        feats = self.frames(lo, hi)
        index = torch.arange(start, start + count)[:, None] + torch.arange(-m, m + 1)[None, :]
        index = index.clamp(0, last).clamp(lo, hi - 1) - lo
        return feats[index.to(feats.device)]


# -- Hallo -----------------------------------------------------------------------------------------
WHOLE_FILE_MAX_SECONDS = 60.0  # "auto" computes Hallo's whole-file grid up to this duration
BLOCK_FRAMES = 250  # windowed mode: features computed 10 s (at 25 fps) at a time...
CONTEXT_FRAMES = 100  # ...with 4 s of audio either side (see HalloAudio for the measured effect)


def hallo_normalize(audio: np.ndarray) -> np.ndarray:
    """Wav2Vec2FeatureExtractor's zero-mean, unit-variance normalisation (float32, as Hallo runs it)."""
    x = np.asarray(audio, dtype=np.float32)
    if not x.size:
        return x.copy()
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def hallo_grid(num_samples: int, sample_rate: int, fps: int, clip_frames: int) -> tuple[int, int, int]:
    """Hallo's frame grid for audio of `num_samples`: (frames, padded frames, padding samples).

    `frames = ceil(samples / rate * fps)`; when that is not a multiple of the clip length, the
    (already normalised) audio gets `(clip - frames % clip) * (rate // fps)` zero samples at the
    end and the grid is extended to the next multiple of the clip length
    (hallo/datasets/audio_processor.py).
    """
    frames = math.ceil(num_samples / sample_rate * fps)
    padded, pad = frames, 0
    if frames % clip_frames:
        pad = (clip_frames - frames % clip_frames) * (sample_rate // fps)
        padded = frames + clip_frames - frames % clip_frames
    return frames, padded, pad


def window_indices(start: int, count: int, m: int, last: int) -> np.ndarray:
    """(count, 2m + 1) frame indices i - m .. i + m of each frame i in [start, start + count),
    clamped to [0, last] (Hallo's `process_audio_emb`, `last` being its padded end)."""
    index = np.arange(start, start + count)[:, None] + np.arange(-m, m + 1)[None, :]
    return np.clip(index, 0, last)


class HalloAudio:
    """Hallo's wav2vec features of one job: `hidden_states[1:]` per frame, (layers, dim) each.

    Hallo runs wav2vec once over the whole normalised, padded file (`hallo_grid`), with the CNN
    features linearly interpolated (align_corners) from their 50 Hz to the padded frame count
    before the transformer. That is mode "whole": exact, but its memory grows with the duration
    (the features take 36 KB per frame, the transformer's attention the square of the length).

    Mode "windowed" bounds memory for long audio: frames are computed in blocks of
    `block_frames`, each from the audio of the block plus `context_frames` either side, with
    the interpolation done at the very positions of Hallo's whole-file grid (so the grid does not
    shift); only the CNN's group-norm statistics and the transformer's attention span are local.
    A block's features depend only on the audio and the block index, so a resumed render
    computes what an uninterrupted one does. "auto" is "whole" up to 60 s, else "windowed".

    Measured difference windowed - whole, `python benchmarks/hallo_audio_windows.py --seconds 30`
    (wav2vec2-base layout with *random* weights, as no real weights are available here; 30 s of
    looped speech, blocks of 250 frames), mean |diff| relative to mean |whole| over all layers and
    frames, by context: 12 frames 10.2%, 25 frames 8.3%, 50 frames 5.3%, 100 frames 3.8% (max
    |diff| 4.5, 4.6, 1.8, 1.1). The default context is 100 frames (4 s), which costs 1.8x the
    wav2vec compute of one pass, still small beside the diffusion. With a window spanning the
    whole file the two modes agree to float error (tests/backends/emo/test_hallo_audio.py). Run
    the script with `--wav2vec DIR` on wav2vec2-base-960h to measure the trained model. (Hallo2's
    own long-video script cuts the audio into 60 s pieces encoded separately, with no context.)
    """

    def __init__(
        self,
        encoder,
        audio: np.ndarray,
        *,
        sample_rate: int,
        fps: int,
        clip_frames: int,
        mode: str = "auto",
        block_frames: int = BLOCK_FRAMES,
        context_frames: int = CONTEXT_FRAMES,
        normalize: bool = True,
    ) -> None:
        self.encoder = encoder
        samples = np.asarray(audio, dtype=np.float32)
        self.frames, self.padded_frames, pad = hallo_grid(samples.shape[0], sample_rate, fps, clip_frames)
        samples = hallo_normalize(samples) if normalize else samples
        self.samples = np.concatenate([samples, np.zeros(pad, dtype=np.float32)])
        if mode == "auto":
            mode = "whole" if samples.shape[0] <= WHOLE_FILE_MAX_SECONDS * sample_rate else "windowed"
        if mode not in ("whole", "windowed"):
            raise ValueError(f"unknown audio feature mode {mode!r}")
        self.mode = mode
        self.block_frames, self.context_frames = int(block_frames), int(context_frames)
        conv = encoder.config
        self.stride = int(np.prod(conv.conv_stride))
        self.receptive = 1 + sum(
            (k - 1) * int(np.prod(conv.conv_stride[:i])) for i, k in enumerate(conv.conv_kernel)
        )
        total = int(encoder._get_feat_extract_output_lengths(self.samples.shape[0]))
        if total < 1:
            raise ValueError(f"the audio is too short for wav2vec: {self.samples.shape[0]} samples")
        self.cnn_frames = total
        self._cache: dict[int, torch.Tensor] = {}
        self._whole = (
            self._encode(0, self.samples.shape[0], np.arange(self.padded_frames)) if mode == "whole" else None
        )

    def positions(self, frames: np.ndarray) -> np.ndarray:
        """Where frames of Hallo's grid sit among the whole file's CNN frames (align_corners)."""
        if self.padded_frames == 1:
            return np.zeros(len(frames))
        return np.asarray(frames, dtype=np.float64) * (self.cnn_frames - 1) / (self.padded_frames - 1)

    @torch.no_grad()
    def _encode(self, a: int, b: int, frames: np.ndarray) -> torch.Tensor:
        """wav2vec over samples [a, b) (a on the CNN stride), its CNN features interpolated at the
        grid positions of `frames`: (len(frames), layers, dim) float32 on the CPU."""
        pos = torch.from_numpy(self.positions(frames) - a // self.stride)
        param = next(self.encoder.parameters())
        wave = torch.from_numpy(self.samples[a:b])[None].to(param.device, param.dtype)

        def on_grid(module, args, output):
            if a == 0 and b == self.samples.shape[0]:  # the whole file: exactly Hallo's call
                return F.interpolate(output, size=len(frames), mode="linear", align_corners=True)
            last = output.shape[-1] - 1
            p = pos.to(output.device).clamp(0, last)
            lo = p.floor().long().clamp(max=max(last - 1, 0))
            w = (p - lo).to(output.dtype)
            hi = (lo + 1).clamp(max=last)
            return output[..., lo] * (1 - w) + output[..., hi] * w

        handle = self.encoder.feature_extractor.register_forward_hook(on_grid)
        try:
            states = self.encoder(wave, output_hidden_states=True).hidden_states
        finally:
            handle.remove()
        return torch.stack(states[1:], dim=2)[0].float().cpu()

    def _block(self, index: int) -> torch.Tensor:
        """Features of block `index` (frames [index * B, (index + 1) * B) of the padded grid)."""
        if index not in self._cache:
            lo = index * self.block_frames
            hi = min(lo + self.block_frames, self.padded_frames)
            ctx_lo = max(0, lo - self.context_frames)
            ctx_hi = min(self.padded_frames, hi + self.context_frames)
            pos = self.positions(np.array([ctx_lo, ctx_hi - 1]))
            k0 = int(np.floor(pos[0]))
            k1 = min(int(np.ceil(pos[1])), self.cnn_frames - 1)
            a = k0 * self.stride
            # At the file's end take every sample: the first conv layer's group norm sees them all.
            b = self.samples.shape[0] if k1 == self.cnn_frames - 1 else k1 * self.stride + self.receptive
            feats = self._encode(a, b, np.arange(ctx_lo, ctx_hi))
            # Clips read blocks in order; a clip's +-m window may reach back into the previous one.
            self._cache = {i: f for i, f in self._cache.items() if i == index - 1}
            self._cache[index] = feats[lo - ctx_lo : hi - ctx_lo]
        return self._cache[index]

    def frames_range(self, lo: int, hi: int) -> torch.Tensor:
        """Features of grid frames [lo, hi): (hi - lo, layers, dim)."""
        if self._whole is not None:
            return self._whole[lo:hi]
        first, last = lo // self.block_frames, (hi - 1) // self.block_frames
        parts = [self._block(i) for i in range(first, last + 1)]
        feats = torch.cat(parts) if len(parts) > 1 else parts[0]
        return feats[lo - first * self.block_frames : hi - first * self.block_frames]

    def window(self, start: int, count: int, m: int = 2) -> torch.Tensor:
        """Hallo's +-m window of frames [start, start + count): (count, 2m + 1, layers, dim),
        indices clamped to the padded grid as Hallo does."""
        index = window_indices(start, count, m, self.padded_frames - 1)
        lo, hi = int(index.min()), int(index.max()) + 1
        return self.frames_range(lo, hi)[torch.from_numpy(index - lo)]
