"""Rendered videos for the quality gates: one normal warp render and one per fault.

Every video is a real render of the committed astronaut portrait saying the committed English
sentence with 1.2 s of silence in the middle (so the mouth-at-rest measure has silence to
judge), at 256x256 in chunks of 50 frames. Faults are made the way they arise: by the backend
(`expression: 0`; frames driven by audio 200 ms early; a colour cast in one chunk's frames), or
by editing the published file (frames dropped from the end, then signed and described again as
a render would; metadata stripped by re-encoding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories import ASSETS, write_samples
from qc_faults import (
    PAUSE_AT_S,
    PAUSE_S,
    RATE,
    BabbleWarp,
    BlurWarp,
    ColourCastWarp,
    EarlyMouthWarp,
    drop_last_frames,
    render,
)

from emo_cli.backends.warp import WarpBackend
from emo_cli.media.audio import decode_audio
from emo_cli.media.ffmpeg import run_ffmpeg


@pytest.fixture(scope="session")
def speech_with_pause(tmp_path_factory: pytest.TempPathFactory) -> Path:
    voice = decode_audio(ASSETS / "hello_en.wav", RATE)
    cut = int(PAUSE_AT_S * RATE)  # between two words
    audio = np.concatenate([voice[:cut], np.zeros(int(PAUSE_S * RATE), np.float32), voice[cut:]])
    return write_samples(tmp_path_factory.mktemp("qc_audio") / "pause.wav", audio, RATE)


@pytest.fixture(scope="session")
def qc_videos(tmp_path_factory: pytest.TempPathFactory, speech_with_pause: Path) -> dict[str, Path]:
    """{"normal", "frozen", "shifted", "cast", "blurred", "babbling", "dropped", "stripped"} -> video."""
    folder = tmp_path_factory.mktemp("qc_videos")
    normal = render(folder, speech_with_pause, WarpBackend(), "normal")
    videos = {
        "normal": normal.output,
        "frozen": render(folder, speech_with_pause, WarpBackend(), "frozen", expression=0).output,
        "shifted": render(folder, speech_with_pause, EarlyMouthWarp(), "shifted").output,
        "cast": render(folder, speech_with_pause, ColourCastWarp(), "cast").output,
        "blurred": render(folder, speech_with_pause, BlurWarp(), "blurred").output,
        # expression 2: the warp mouth at 256 px opens only ~0.03 face heights at expression 1,
        # too little over its closed aperture for talking through a 1.2 s pause to stand out.
        "babbling": render(folder, speech_with_pause, BabbleWarp(), "babbling", expression=2.0).output,
        "dropped": drop_last_frames(normal, folder / "dropped.mp4"),
        "stripped": folder / "stripped" / "stripped.mp4",
    }
    videos["stripped"].parent.mkdir()
    run_ffmpeg(["-i", str(normal.output), "-map", "0:v", "-map", "0:a", "-c:v", "libx264", "-crf", "20",
                "-c:a", "copy", "-map_metadata", "-1", str(videos["stripped"])],
               what="strip the metadata of", file=normal.output)  # fmt: skip
    return videos


