"""audio_duration: decoded samples over the rate, and InputError naming the file otherwise."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from emo_cli.errors import InputError
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
