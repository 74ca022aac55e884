"""wav2vec 2.0 features aligned to the video frame rate, computed clip by clip.

The CNN features of wav2vec 2.0 (50 per second) are interpolated to the video frame count
before the transformer, so every hidden state has exactly one row per video frame; the last
`layers` hidden states are stacked per frame. Each clip's features come from the audio around
it (the clip, +-m frames, plus `context_seconds` either side), which keeps memory constant for
any duration and makes a clip's features a pure function of the audio and its frame range.
"""

from __future__ import annotations

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
