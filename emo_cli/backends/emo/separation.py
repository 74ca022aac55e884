"""Vocal separation before wav2vec, as Hallo does, with the MDX-Net model of its download.

Hallo runs python-audio-separator with `Kim_Vocal_2.onnx` (an MDX-Net model, UVR's settings
for it: n_fft 7680, hop 1024, 3072 frequency bins, 256 STFT frames per segment, output
compensation 1.009) and feeds the vocal stem, resampled to 16 kHz, to wav2vec. The separator
package is not a dependency (it pins its own torch and pulls a dozen audio libraries); the
MDX inference is short and is written here with onnxruntime and torch's STFT to the same
arithmetic: segments of 261,120 samples at 44.1 kHz with 3840 zero samples of context either
side, 25% overlap, Hann-weighted overlap-add, the first three frequency bins zeroed, the mix
scaled down to a 0.9 peak first.

Two differences from Hallo, both from emo-cli's design:
- The input is the job's audio as the render decodes it (mono, 16 kHz), upsampled to 44.1 kHz
  stereo (both channels alike) with libswresample, so the model sees nothing above 8 kHz;
  Hallo separates the original file. Speech and singing voices are mostly below 8 kHz, and
  wav2vec only reads 16 kHz audio in both cases.
- It streams: two passes over the audio, each holding one segment at a time, so a two-hour
  track separates in a few hundred MB (Hallo holds the whole track at 44.1 kHz several times).
  Hallo's final peak normalisation of the stem is left out: a global gain that wav2vec's
  zero-mean, unit-variance input normalisation removes.

It runs on onnxruntime's CPU provider, like the face models: the same stem on every node, so a
job resumed on another machine reads the same audio features. The stem is recomputed each time
a job starts (or resumes); on a CPU that costs about as long as the model takes per 4.4 s step of
audio, times the duration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_RATE = 44100
N_FFT = 7680
HOP = 1024
DIM_F = 3072
SEGMENT_FRAMES = 256
COMPENSATE = 1.009  # Kim_Vocal_2's entry in UVR's model table
OVERLAP = 0.25
PEAK = 0.9
MODEL_FILE = "Kim_Vocal_2.onnx"


def _resampled(blocks: Iterator[np.ndarray], src: int, dst: int) -> Iterator[np.ndarray]:
    """Resample a stream of mono float32 blocks with libswresample (as ffmpeg's -ar does)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst)

    def frames(out):
        for frame in out:
            yield frame.to_ndarray().reshape(-1)

    for block in blocks:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block, dtype=np.float32)[None], format="flt", layout="mono"
        )
        frame.sample_rate = src
        yield from frames(resampler.resample(frame))
    yield from frames(resampler.resample(None))


def _blocks(audio: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for lo in range(0, audio.shape[0], size):
        yield audio[lo : lo + size]


class _Window:
    """A sliding view of a stream: `take(start, end)` returns samples [start, end) of the stream
    (zeros past its end) and forgets everything before `start`."""

    def __init__(self, stream: Iterator[np.ndarray]) -> None:
        self.stream = stream
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset = 0  # stream position of buffer[0]

    def take(self, start: int, end: int) -> np.ndarray:
        while self.offset + self.buffer.shape[0] < end:
            block = next(self.stream, None)
            if block is None:
                break
            self.buffer = np.concatenate([self.buffer, block])
        self.buffer = self.buffer[start - self.offset :]
        self.offset = start
        part = self.buffer[: end - start]
        return np.pad(part, (0, end - start - part.shape[0]))


class VocalSeparator:
    """Kim_Vocal_2 (or any MDX-Net ONNX model with the same STFT settings) on onnxruntime."""

    def __init__(self, path: Path | str, batch: int = 1) -> None:
        import onnxruntime

        from emo_cli.errors import WeightsError

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own exception types
            raise WeightsError(f"{path} cannot be loaded by onnxruntime ({exc}); replace it with "
                               f"audio_separator/{MODEL_FILE} from Hallo's download") from exc  # fmt: skip
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.path = Path(path)

    def _model(self, segment: np.ndarray) -> np.ndarray:
        """One segment (2, chunk) at 44.1 kHz -> the model's vocal estimate (2, chunk)."""
        import torch

        window = torch.hann_window(N_FFT, periodic=True)
        wave = torch.from_numpy(segment)
        spec = torch.stft(wave, n_fft=N_FFT, hop_length=HOP, window=window, center=True, return_complex=True)
        spec = torch.view_as_real(spec).permute(0, 3, 1, 2).reshape(1, 4, -1, spec.shape[-1])[:, :, :DIM_F]
        spec[:, :, :3] = 0  # UVR zeroes the lowest bins
        pred = self.session.run([self.output_name], {self.input_name: spec.numpy().astype(np.float32)})[0]
        pred = torch.from_numpy(pred)
        full = torch.zeros((1, 4, N_FFT // 2 + 1, pred.shape[-1]), dtype=pred.dtype)
        full[:, :, :DIM_F] = pred
        complex_spec = torch.view_as_complex(
            full.reshape(2, 2, N_FFT // 2 + 1, -1).permute(0, 2, 3, 1).contiguous()
        )
        out = torch.istft(complex_spec, n_fft=N_FFT, hop_length=HOP, window=window, center=True)
        return out.numpy()

    def separate(self, audio: np.ndarray, rate: int, block_seconds: float = 30.0) -> np.ndarray:
        """The vocal stem of mono float32 `audio` at `rate`, at the same rate and length."""
        audio = np.asarray(audio, dtype=np.float32)
        if not audio.size:
            return audio.copy()
        block = max(1, int(block_seconds * rate))
        peak = max(
            (float(np.abs(b).max()) for b in _resampled(_blocks(audio, block), rate, MODEL_RATE)), default=0.0
        )
        gain = np.float32(PEAK / peak) if peak > PEAK else np.float32(1.0)
        length = int(round(audio.shape[0] * MODEL_RATE / rate))

        trim = N_FFT // 2
        chunk = HOP * (SEGMENT_FRAMES - 1)
        gen = chunk - 2 * trim
        total = trim + length + gen + trim - (length % gen)
        step = int((1 - OVERLAP) * chunk)
        source = _Window(_resampled(_blocks(audio, block), rate, MODEL_RATE))

        def vocals() -> Iterator[np.ndarray]:
            acc = np.zeros((2, chunk), dtype=np.float32)
            weight = np.zeros(chunk, dtype=np.float32)
            acc_start = 0
            emitted = 0  # stream samples (with the leading `trim`) already yielded
            for start in range(0, total, step):
                end = min(start + chunk, total)
                shift = start - acc_start
                if shift:
                    yield from self._finished(acc[:, :shift], weight[:shift], emitted, trim, length)
                    emitted += shift
                    acc = np.concatenate([acc[:, shift:], np.zeros((2, shift), np.float32)], axis=1)
                    weight = np.concatenate([weight[shift:], np.zeros(shift, np.float32)])
                    acc_start = start
                # The stream of model input: `trim` zeros, the mix, zeros.
                lo, hi = start - trim, end - trim
                mono = np.zeros(end - start, dtype=np.float32)
                if hi > 0 and lo < length:
                    a = max(lo, 0)
                    mono[a - lo : min(hi, length) - lo] = source.take(a, min(hi, length)) * gain
                segment = np.zeros((2, chunk), dtype=np.float32)
                segment[:, : end - start] = mono
                window = np.hanning(end - start).astype(np.float32)
                out = self._model(segment)[:, : end - start] * window
                acc[:, : end - start] += out
                weight[: end - start] += window
            yield from self._finished(
                acc[:, : total - acc_start], weight[: total - acc_start], emitted, trim, length
            )

        stem = _resampled(vocals(), MODEL_RATE, rate)
        out = np.zeros(audio.shape[0], dtype=np.float32)
        pos = 0
        for piece in stem:
            n = min(piece.shape[0], out.shape[0] - pos)
            out[pos : pos + n] = piece[:n]
            pos += n
        log.info("vocals separated from the audio with %s", self.path.name)
        return out

    @staticmethod
    def _finished(
        acc: np.ndarray, weight: np.ndarray, emitted: int, trim: int, length: int
    ) -> Iterator[np.ndarray]:
        """Final overlap-added samples: the mean of the two channels, Hann weights divided out,
        cut to the mix (the leading `trim` and the padding dropped), times the compensation."""
        lo, hi = max(trim - emitted, 0), min(trim + length - emitted, acc.shape[1])
        if hi <= lo:
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            wave = acc[:, lo:hi].mean(axis=0) / weight[lo:hi]
        yield (np.nan_to_num(wave) * np.float32(COMPENSATE)).astype(np.float32)


def find_separator(folder: Path | str | None) -> Path | None:
    """The vocal separator model in a weights folder's `audio_separator/`, if it is there."""
    if folder is None:
        return None
    path = Path(folder) / "audio_separator" / MODEL_FILE
    return path if path.is_file() else None
