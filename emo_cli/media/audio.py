"""Audio in: any format ffmpeg reads (wav, mp3, m4a/aac, flac, ogg/opus...) -> mono float32."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emo_cli.errors import InputError
from emo_cli.media.ffmpeg import FfmpegProcess
from emo_cli.media.probe import require_audio_file

_READ_BLOCK = 1 << 20


def decode_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream of `path` to mono float32 in [-1, 1] at `sample_rate`.

    Samples are read into one growing buffer (no second copy), so a long track costs its
    decoded size once. Duration is ``len(samples) / sample_rate``.

    Raises:
        InputError: the file is missing, has no audio, or cannot be decoded (ffmpeg's reason).
    """
    path = Path(path)
    require_audio_file(path)
    proc = FfmpegProcess(
        ["-i", os.fspath(path), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"],
        what="decode audio",
        file=path,
        stdout=True,
        error=InputError,
    )
    buffer = bytearray()
    try:
        while block := proc.stdout.read(_READ_BLOCK):
            buffer += block
    except BaseException:
        proc.kill()
        raise
    proc.finish()
    usable = len(buffer) - len(buffer) % 4
    if usable == 0:
        raise InputError(f"audio {path} contains no audio samples")
    del buffer[usable:]
    samples = np.frombuffer(buffer, dtype="<f4")
    return np.clip(samples, -1.0, 1.0, out=samples)
