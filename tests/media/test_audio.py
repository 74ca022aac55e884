"""Audio decode: every common format gives mono float32 of the right length; bad files say why."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from factories import SPEECH

from emo_cli.errors import InputError, MediaError
from emo_cli.media.audio import decode_audio
from emo_cli.media.ffmpeg import ffmpeg_exe, run_ffmpeg
from emo_cli.planning.job import frames_for

FORMATS = {
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "m4a": ["-c:a", "aac", "-b:a", "64k"],
    "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
    "flac": ["-c:a", "flac"],
    "ogg": ["-c:a", "libvorbis"],
    "opus": ["-c:a", "libopus", "-b:a", "32k"],
}


@pytest.fixture(scope="module")
def speech_in(tmp_path_factory) -> dict[str, Path]:
    """The committed speech WAV converted to every format, with the same ffmpeg."""
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for ext, args in FORMATS.items():
        target = folder / f"hello.{ext}"
        run_ffmpeg(["-i", str(SPEECH), *args, str(target)], what="convert", file=target)
        files[ext] = target
    return files


@pytest.mark.parametrize("ext", list(FORMATS))
def test_every_format_decodes_to_the_speech_duration(speech_in, ext):
    reference = decode_audio(SPEECH, 16000)
    samples = decode_audio(speech_in[ext], 16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.abs(samples).max() <= 1.0
    # Containers that record the encoder's priming (mp4, ogg, LAME's header) decode to within a
    # few ms, under a frame at 25 fps. Raw ADTS AAC cannot record it: up to two AAC frames extra.
    tolerance = 2 * 1024 / 16000 + 0.01 if ext == "aac" else 0.02
    assert abs(len(samples) - len(reference)) / 16000 < tolerance
    if ext != "aac":
        assert abs(frames_for(len(samples) / 16000, 25) - frames_for(len(reference) / 16000, 25)) <= 1
    # Same speech: loudness envelopes (per 10 ms) agree, allowing the raw AAC's priming shift.
    n = min(len(samples), len(reference)) // 160 * 160
    env = np.sqrt(np.mean(samples[:n].reshape(-1, 160) ** 2, axis=1))
    ref = np.sqrt(np.mean(reference[:n].reshape(-1, 160) ** 2, axis=1))
    best = max(np.corrcoef(env[lag : lag + len(ref) - 20], ref[: len(ref) - 20])[0, 1] for lag in range(0, 20))
    assert best > 0.95


def test_wav_duration_is_exact_and_resampling_keeps_it():
    at_16k = decode_audio(SPEECH, 16000)
    at_48k = decode_audio(SPEECH, 48000)
    assert len(at_16k) == 102533  # the committed file's sample count at its own rate
    assert abs(len(at_48k) / 48000 - len(at_16k) / 16000) < 1e-3


def test_broken_audio_is_an_input_error_naming_the_file(tmp_path):
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3 this is not audio at all" * 10)
    with pytest.raises(InputError, match=r"broken\.mp3.*ffmpeg says"):
        decode_audio(broken, 16000)


def test_missing_audio_and_file_without_audio(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.wav does not exist"):
        decode_audio(tmp_path / "nowhere.wav", 16000)
    silent_video = tmp_path / "video_only.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=black:s=32x32:d=0.2", "-c:v", "libx264", str(silent_video)],
               what="make", file=silent_video)  # fmt: skip
    with pytest.raises(InputError, match="video_only.mp4"):
        decode_audio(silent_video, 16000)


def test_ffmpeg_binary_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("FFMPEG_BINARY", raising=False)
    monkeypatch.delenv("EMO_USE_SYSTEM_FFMPEG", raising=False)
    bundled = ffmpeg_exe()
    assert os.access(bundled, os.X_OK)
    monkeypatch.setenv("FFMPEG_BINARY", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(MediaError, match="FFMPEG_BINARY"):
        ffmpeg_exe()
    monkeypatch.setenv("FFMPEG_BINARY", bundled)
    assert ffmpeg_exe() == bundled
    monkeypatch.delenv("FFMPEG_BINARY")
    monkeypatch.setenv("EMO_USE_SYSTEM_FFMPEG", "1")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MediaError, match="no ffmpeg is on PATH"):
        ffmpeg_exe()
    (tmp_path / "ffmpeg").symlink_to(bundled)
    assert ffmpeg_exe() == str(tmp_path / "ffmpeg")
