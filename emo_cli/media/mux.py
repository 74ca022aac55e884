"""The final mux: concatenate a job's segments (stream copy) and add its audio.

The audio can be encoded ahead of the mux (`AudioEncoder`, started when the job starts, so it
runs beside the single-threaded face analysis instead of after the last frame) and is then
copied; or `mux` encodes it itself. Codecs and container flags come from the output's format
(`formats`): H.264 + AAC in an MP4 with the index up front (`+faststart`) by default.

The concat demuxer joins the per-chunk segments without re-encoding (each starts with a key
frame and all share one encoder configuration). The output carries the metadata it is given
(the provenance tags) and appears atomically: a temporary in the output's folder renamed into
place. A failed mux leaves the segments for the next run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from emo_cli.fsutil import atomic_write_text, remove_stale_temporaries
from emo_cli.media.ffmpeg import FfmpegOutput
from emo_cli.media.formats import MP4, OutputFormat


def write_concat_list(path: Path, segments: Sequence[str]) -> Path:
    """An ffconcat list at `path` of `segments` (paths relative to the list's folder).

    Relative names made of letters, digits, '.', '_', '-' and '/' pass the demuxer's safe mode.
    """
    lines = ["ffconcat version 1.0", *(f"file '{name}'" for name in segments)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def metadata_args(metadata: Mapping[str, str]) -> list[str]:
    """ffmpeg's `-metadata key=value` arguments, in the mapping's order."""
    args: list[str] = []
    for key, value in metadata.items():
        args += ["-metadata", f"{key}={value}"]
    return args


class AudioEncoder(FfmpegOutput):
    """`audio` encoded in the format's audio codec at `path` by an ffmpeg that runs while the
    caller goes on (AAC in an M4A for MP4).

    `finish` waits for it and renames the file into place (atomically); `abort` stops it and
    leaves nothing. The mux then copies the stream (`mux(..., audio_encoded=True)`).
    """

    def __init__(self, audio: Path, path: Path, fmt: OutputFormat = MP4) -> None:
        super().__init__(
            ["-i", os.fspath(audio), "-map", "0:a:0", "-vn", *fmt.audio_codec,
             "-map_metadata", "-1", "-fflags", "+bitexact", "-f", fmt.muxer],
            path, what="encode the audio of", file=audio,
        )  # fmt: skip


def mux(
    concat_list: Path,
    audio: Path,
    output: Path,
    *,
    metadata: Mapping[str, str],
    audio_encoded: bool = False,
    fmt: OutputFormat = MP4,
    while_running: Callable[[], None] | None = None,
) -> None:
    """Mux the segments in `concat_list` with `audio` into `output` (atomically), in format `fmt`.

    `audio` is encoded here, or copied when `audio_encoded` (an `AudioEncoder` output).
    `metadata` is written into the container as it is (keys kept by `+use_metadata_tags`).
    `while_running` is called once ffmpeg has started (a checkpoint hook).
    """
    remove_stale_temporaries(output)
    audio_codec = ["-c:a", "copy"] if audio_encoded else list(fmt.audio_codec)
    muxing = FfmpegOutput(
        ["-f", "concat", "-safe", "1", "-i", os.fspath(concat_list), "-i", os.fspath(audio),
         "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio_codec,
         "-map_metadata", "-1", *metadata_args(metadata), *fmt.output_flags, "-f", fmt.muxer],
        output, what="mux", file=output,
    )  # fmt: skip
    try:
        if while_running is not None:
            while_running()
    except BaseException:
        muxing.abort()
        raise
    muxing.finish()
