"""Decoding for the dataset: frame-rate conversion to 25 fps, display rotation, audio alignment."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from emo_cli.errors import InputError
from emo_cli.training.video import probe_video, read_audio, read_frames


def _numbered_video(path, fps: int, frames: int, rotation: int = 0, size=(48, 32)):
    """Frame i is grey level 8 * i, with a white 8x8 block at its stored top-left corner."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            image = np.full((size[1], size[0], 3), 8 * i, np.uint8)
            image[:8, :8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(("source_fps", "expected"), [
    (30, [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29]),
    (50, list(range(0, 30, 2))),
    (25, list(range(30))),
])  # fmt: skip
def test_frames_are_resampled_to_25_fps_by_nearest_time(tmp_path, source_fps, expected):
    path = _numbered_video(tmp_path / "n.mp4", source_fps, 30)
    levels = [int(round(float(np.median(f[16:, 16:, 0])) / 8)) for f in read_frames(path, 25)]
    assert levels == expected


def test_display_rotation_is_applied_like_players_do(tmp_path):
    path = _numbered_video(tmp_path / "r.mp4", 25, 2, rotation=90)
    frame = next(read_frames(path, 25))
    assert frame.shape == (48, 32, 3)  # stored 48 wide, 32 high; shown turned a quarter
    assert frame[-1, 0, 0] > 200 and frame[0, 0, 0] < 100  # stored top-left, shown bottom-left (as ffmpeg)


def test_audio_is_mono_at_the_rate_asked_and_starts_with_the_first_frame(tmp_path):
    rate = 16000
    path = tmp_path / "a.mp4"
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        for _ in range(25):
            for packet in video.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        for start in range(0, 48000, 1024):
            block = np.stack([tone[start : start + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    info = probe_video(path)
    assert (info.width, info.height) == (32, 32) and info.frames_at(25) == 25
    audio = read_audio(path, rate, info.start)
    assert audio.dtype == np.float32 and abs(audio.size - rate) < 200
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    n = min(audio.size, rate) - 2000
    assert np.corrcoef(audio[1000:n], expected[1000:n])[0, 1] > 0.99  # in phase: aligned to the sample


def test_garbage_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "x.mov"
    path.write_bytes(b"\x00\x01garbage" * 500)
    with pytest.raises(InputError, match=r"video .*x\.mov cannot be read \(damaged, truncated or not a video\)"):
        probe_video(path)


def test_a_hole_in_the_file_is_marked_and_the_audio_after_it_stays_in_sync(tmp_path):
    """Seconds 1-2 are missing from picture and sound (a damaged recording); the rest must line up."""
    from emo_cli.training.video import read_frames_marked

    path, rate = tmp_path / "hole.mkv", 16000
    kept = [*range(25), *range(50, 75)]  # frame numbers at 25 fps: one second missing
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = container.add_stream("pcm_f32le", rate=rate)
        sound.layout = "mono"
        for i in kept:
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 3 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        for start in [*range(0, rate, 800), *range(2 * rate, 3 * rate, 800)]:
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 800].copy(), format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in sound.encode(frame):
                container.mux(packet)
    frames = list(read_frames_marked(path, 25))
    held = [k for k, (_, gap) in enumerate(frames) if gap]
    assert len(frames) == 75
    assert 15 <= len(held) <= 25 and held == list(range(held[0], held[-1] + 1))
    assert 25 <= held[0] and held[-1] < 50
    audio = read_audio(path, rate, 0.0)
    assert audio.size == 3 * rate
    assert np.abs(audio[rate + 100 : 2 * rate - 100]).max() == 0  # the hole is silence
    after = slice(2 * rate, 3 * rate)
    assert np.corrcoef(audio[after], tone[after])[0, 1] > 0.999  # and what follows is in phase
