"""Segment encode and final mux: deterministic bytes, exact frame count, sync, faststart, tags."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import av
import numpy as np
import pytest
from factories import decoded_frames, write_wav

from emo_cli.errors import MediaError, RenderError
from emo_cli.media.mux import AudioEncoder, mux, write_concat_list
from emo_cli.media.segment import encode_segment
from emo_cli.planning.job import chunk_ranges, frames_for
from emo_cli.provenance.tags import read_tags

FPS = 25


def gradient_frames(start: int, count: int, size: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    return np.stack(
        [np.stack([(xs * 3 + i * 5) % 256, (ys * 3 + i * 7) % 256, (xs + ys + i) % 256], axis=-1)
         for i in range(start, start + count)]
    ).astype(np.uint8)  # fmt: skip


def render_segments(work: Path, num_frames: int, chunk: int) -> list[str]:
    names = []
    for index, (start, count) in enumerate(chunk_ranges(num_frames, chunk)):
        name = f"chunks/{index:05d}.mp4"
        encode_segment(gradient_frames(start, count), work / name, fps=FPS, gop=chunk)
        names.append(name)
    return names


def test_same_frames_give_the_same_segment_bytes(tmp_path):
    frames = gradient_frames(0, 12)
    encode_segment(frames, tmp_path / "a.mp4", fps=FPS, gop=12)
    encode_segment(frames, tmp_path / "b.mp4", fps=FPS, gop=12)
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.mp4", "b.mp4")]
    assert digest[0] == digest[1]
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*tmp*"))
    with av.open(str(tmp_path / "a.mp4")) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        assert packets[0].is_keyframe and not any(p.is_keyframe for p in packets[1:])


def test_segment_refuses_odd_sizes_and_wrong_dtypes(tmp_path):
    with pytest.raises(RenderError, match="even width and height"):
        encode_segment(np.zeros((2, 63, 64, 3), np.uint8), tmp_path / "odd.mp4", fps=FPS, gop=2)
    with pytest.raises(RenderError, match="uint8"):
        encode_segment(np.zeros((2, 64, 64, 3), np.float32), tmp_path / "float.mp4", fps=FPS, gop=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("aac_ahead", [False, True], ids=["encoded-in-mux", "encoded-ahead"])
@pytest.mark.parametrize("seconds", [1.0, 1.37])
def test_mux_gives_h264_aac_faststart_in_sync_with_every_frame(tmp_path, seconds, aac_ahead):
    audio = write_wav(tmp_path / "voice.wav", seconds)
    num_frames = frames_for(seconds, FPS)
    assert num_frames == math.ceil(seconds * FPS - 1e-6)
    work = tmp_path / "work"
    names = render_segments(work, num_frames, chunk=10)
    if aac_ahead:
        encoder = AudioEncoder(audio, work / "audio.m4a")
        encoder.finish()
        audio = work / "audio.m4a"
    output = tmp_path / "out" / "video.mp4"
    mux(write_concat_list(work / "segments.ffconcat", names), audio, output, metadata={"emo_tool": "emo-cli", "ai_generated": "true"},
        audio_encoded=aac_ahead)  # fmt: skip

    with av.open(str(output)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert sound.codec_context.name == "aac"
        video_seconds = float(video.duration * video.time_base)
        audio_seconds = float(sound.duration * sound.time_base)
    frames = decoded_frames(output)
    assert len(frames) == num_frames
    assert abs(video_seconds - num_frames / FPS) < 1e-3
    assert abs(audio_seconds - seconds) < 1 / FPS
    assert abs(video_seconds - audio_seconds) < 1 / FPS
    data = output.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "the index must come first (+faststart)"
    # Stream copy: the muxed frames are the segments' frames, untouched.
    segment_frames = [f for name in names for f in decoded_frames(work / name)]
    assert all(np.array_equal(a, b) for a, b in zip(frames, segment_frames, strict=True))
    assert read_tags(output) == {"ai_generated": "true", "emo_tool": "emo-cli"}
    assert sorted(p.name for p in output.parent.iterdir()) == ["video.mp4"]


def test_failed_mux_leaves_no_output_and_keeps_the_segments(tmp_path):
    work = tmp_path / "work"
    names = render_segments(work, 20, chunk=10)
    broken_audio = tmp_path / "voice.wav"
    broken_audio.write_bytes(b"RIFF....not a wav")
    output = tmp_path / "out" / "video.mp4"
    with pytest.raises(MediaError, match=r"cannot mux .*video\.mp4: ffmpeg says"):
        mux(write_concat_list(work / "segments.ffconcat", names), broken_audio, output, metadata={})
    assert list(output.parent.iterdir()) == []
    assert all((work / name).is_file() for name in names)


def test_audio_that_cannot_be_encoded_names_the_file_and_leaves_nothing(tmp_path):
    broken_audio = tmp_path / "voice.wav"
    broken_audio.write_bytes(b"RIFF....not a wav")
    encoder = AudioEncoder(broken_audio, tmp_path / "work" / "audio.m4a")
    with pytest.raises(MediaError, match=r"cannot encode the audio of .*voice\.wav: ffmpeg says"):
        encoder.finish()
    assert list((tmp_path / "work").iterdir()) == []


def test_yuv420p_conversion_averages_chroma_over_each_2x2_cell():
    """BT.601 limited range; luma as OpenCV's I420 gives it, chroma from the 2x2 mean (not the
    top-left pixel's, which aliases) to within the rounding of the mean."""
    import cv2

    from emo_cli.media.segment import rgb_to_yuv420p

    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    planar = rgb_to_yuv420p(rgb)
    assert planar.shape == (72, 64) and planar.dtype == np.uint8
    assert np.array_equal(planar[:48], cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)[:48])
    r, g, b = (rgb[..., c].astype(float) for c in range(3))
    mean = lambda x: x.reshape(24, 2, 32, 2).mean(axis=(1, 3))  # noqa: E731
    u = mean(-0.148 * r - 0.291 * g + 0.439 * b + 128)
    v = mean(0.439 * r - 0.368 * g - 0.071 * b + 128)
    chroma = planar[48:].reshape(-1)
    assert np.abs(chroma[: 24 * 32].reshape(24, 32) - u).max() <= 1.5
    assert np.abs(chroma[24 * 32 :].reshape(24, 32) - v).max() <= 1.5
