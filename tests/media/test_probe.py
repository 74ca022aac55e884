"""audio_duration: decoded samples over the rate, and InputError naming the file otherwise."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from emo_cli.errors import InputError
from emo_cli.media import probe
from emo_cli.media.probe import audio_duration

ASSETS = Path(__file__).resolve().parents[2] / "manifests" / "assets"


@pytest.mark.parametrize("name", ["hello_en.wav", "hello_fr.wav", "hello_es.wav"])
def test_duration_of_the_demo_tracks_matches_their_wav_headers(name):
    with wave.open(str(ASSETS / name)) as wav:
        expected = wav.getnframes() / wav.getframerate()
    assert audio_duration(ASSETS / name) == pytest.approx(expected, abs=1e-9)


def test_duration_of_a_compressed_track(tmp_path):
    import av

    path = tmp_path / "tone.flac"
    rate, seconds = 22050, 1.5
    samples = (np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 440 / rate) * 20000).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert audio_duration(path) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.wav", None, "does not exist"),
        ("garbage.wav", b"RIFF" + bytes(100), "cannot be decoded"),
        ("picture.wav", (ASSETS / "astronaut.jpg").read_bytes(), "has no audio stream"),
    ],
)
def test_unusable_files_raise_input_error_naming_the_path(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        audio_duration(path)
    assert str(path) in str(info.value)


def test_a_folder_is_not_audio(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        audio_duration(tmp_path)


def test_a_track_longer_than_the_limit_is_refused_without_decoding_it_all(tmp_path, monkeypatch):
    """Ten minutes of silence is a few kilobytes of FLAC: a small file, a long decode."""
    from emo_cli.errors import UsageError
    from emo_cli.media.ffmpeg import run_ffmpeg
    from emo_cli.media.probe import MAX_SECONDS_ENV, max_audio_seconds

    path = tmp_path / "silence.flac"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "600", str(path)], what="encode", file=path
    )
    assert path.stat().st_size < 200_000
    monkeypatch.setenv(MAX_SECONDS_ENV, "60")
    with pytest.raises(InputError) as info:
        audio_duration(path)
    assert str(info.value) == (
        f"audio {path} plays longer than 60 s, the limit: cut it into parts, or raise the limit with "
        f"{MAX_SECONDS_ENV} if the track is genuine"
    )
    # Refused while decoding (at 60 s), not after: no duration was found and cached.
    assert not any(key[0] == str(path.resolve()) for key in probe._durations)
    monkeypatch.setenv(MAX_SECONDS_ENV, "600.5")
    assert audio_duration(path) == pytest.approx(600.0)
    # Cached now; a lower limit still refuses it.
    monkeypatch.setenv(MAX_SECONDS_ENV, "599")
    with pytest.raises(InputError, match="plays longer than 599 s"):
        audio_duration(path)
    monkeypatch.delenv(MAX_SECONDS_ENV)
    assert max_audio_seconds() == 4 * 3600
    monkeypatch.setenv(MAX_SECONDS_ENV, "-5")
    with pytest.raises(UsageError, match=f"{MAX_SECONDS_ENV}='-5' is not a positive number of seconds"):
        max_audio_seconds()


def _write_wav(path: Path, *, rate: int, channels: int, width: int, frames: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(bytes(range(256)) * (frames * channels * width // 256) + bytes(frames * channels * width % 256))


@pytest.mark.parametrize(("rate", "channels", "width"), [(16000, 1, 2), (44100, 2, 2), (8000, 1, 1), (48000, 2, 3)])
def test_a_pcm_wav_is_counted_from_its_header_as_pyav_counts_it(tmp_path, rate, channels, width):
    path = tmp_path / "tone.wav"
    _write_wav(path, rate=rate, channels=channels, width=width, frames=rate * 3 // 2 + 7)
    assert probe._pcm_wav_seconds(path) == probe._av_duration(path, 3600.0) == audio_duration(path)


def test_a_truncated_wav_is_decoded_for_what_it_holds(tmp_path):
    """A header that promises more samples than the file holds is not believed: PyAV counts them."""
    path = tmp_path / "cut.wav"
    _write_wav(path, rate=16000, channels=1, width=2, frames=16000)
    path.write_bytes(path.read_bytes()[:-8000])  # 4000 of its 16000 samples gone
    assert probe._pcm_wav_seconds(path) is None
    assert audio_duration(path) == pytest.approx(0.75)


def test_a_wav_over_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    _write_wav(path, rate=8000, channels=1, width=1, frames=8000 * 90)
    monkeypatch.setenv(probe.MAX_SECONDS_ENV, "60")
    with pytest.raises(InputError, match="plays longer than 60 s"):
        audio_duration(path)
    assert not any(key[0] == str(path.resolve()) for key in probe._durations)
