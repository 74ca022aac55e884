"""Output formats, one row each: container, codecs, pixel format, encoder arguments, and the
plane the invisible watermark is marked in.

Everything that depends on the output's format reads it from this table: the segment encoder
(video codec and its arguments), the job's audio encoder, the final mux (container flags),
the work dir's file suffixes, the watermark (which plane of the encoder's input it marks) and
publishing (whether C2PA can sign the container). Adding a format (ProRes in MOV, say) is a
new row here and nothing else.

The format is picked by the output's suffix (`output: {portrait}/{audio}.webm`).

Settings are fixed so that the same frames always give the same bytes: single-threaded
encoders, bit-exact muxing, and every segment one GOP that starts with a key frame, so the
final mux can concatenate segments without re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emo_cli.errors import MediaError

# Time base of every MP4 segment's video track: a multiple of every common fps, so frame times
# are exact integers and concatenated segments line up with no rounding drift.
TRACK_TIMESCALE = 90000
X264_CRF = 18
X264_PRESET = "veryfast"
# On top of the preset: diamond motion search, one subpixel refinement pass, no sub-macroblock
# partitions. On a 60 s warp render at 512x512 (benchmarks/encoder_settings.py) this takes the
# encoder from about 3.3 to 2.0 ms of CPU per frame for files about 10% larger at the same SSIM.
# A talking portrait has little motion and large still areas, where these searches find little.
X264_SPEED = "me=dia:subme=1:partitions=none"
VP9_CRF = 31  # constant quality (with -b:v 0); libvpx's scale is 0-63, 31 is its own web default
VP9_CPU_USED = 4  # libvpx's speed for `-deadline good`: 4 is a common choice for offline VOD


@dataclass(frozen=True)
class OutputFormat:
    name: str  # "mp4"
    suffix: str  # of the output file, ".mp4"
    mime: str  # "video/mp4": what C2PA signs the output as
    muxer: str  # ffmpeg's -f for segments and the output
    video_codec: str  # as ffmpeg names it, "libx264"
    pixel_format: str  # what the encoder takes: frames are converted to this before it
    watermark_plane: str  # which plane of `pixel_format` the watermark marks: "u" (of 4:2:0)
    audio_codec: tuple[str, ...]  # ffmpeg arguments that encode the job's audio
    audio_suffix: str  # of the job's encoded audio in the work dir
    output_flags: tuple[str, ...] = ()  # for the final mux (after the metadata)
    segment_flags: tuple[str, ...] = ()  # container flags of each segment

    def video_args(self, fps: int, gop: int) -> list[str]:
        """The encoder settings shared by every segment of a job (the concat copy relies on this)."""
        codec = _VIDEO_ARGS[self.video_codec](gop)
        return [*codec, "-pix_fmt", self.pixel_format, "-r", str(fps), *self.segment_flags,
                "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"]  # fmt: skip


def _x264(gop: int) -> list[str]:
    return [
        "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
        "-threads", "1", "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:threads=1:lookahead-threads=1:{X264_SPEED}",
    ]  # fmt: skip


def _vp9(gop: int) -> list[str]:
    # No alternate reference frames and no lag: each segment is a plain run of frames from one
    # key frame, as the concat copy needs. One thread, no row multithreading: the same bytes
    # on every machine.
    return [
        "-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", str(VP9_CPU_USED), "-crf", str(VP9_CRF),
        "-b:v", "0", "-threads", "1", "-row-mt", "0", "-tile-columns", "0", "-frame-parallel", "0",
        "-auto-alt-ref", "0", "-lag-in-frames", "0", "-g", str(gop), "-keyint_min", str(gop),
    ]  # fmt: skip


_VIDEO_ARGS = {"libx264": _x264, "libvpx-vp9": _vp9}

MP4 = OutputFormat(
    name="mp4",
    suffix=".mp4",
    mime="video/mp4",
    muxer="mp4",
    video_codec="libx264",
    pixel_format="yuv420p",
    watermark_plane="u",
    audio_codec=("-c:a", "aac", "-b:a", "192k"),
    audio_suffix=".m4a",
    output_flags=("-movflags", "+faststart+use_metadata_tags"),
    segment_flags=("-video_track_timescale", str(TRACK_TIMESCALE)),
)
WEBM = OutputFormat(
    name="webm",
    suffix=".webm",
    mime="video/webm",
    muxer="webm",
    video_codec="libvpx-vp9",
    pixel_format="yuv420p",
    watermark_plane="u",
    audio_codec=("-c:a", "libopus", "-b:a", "128k", "-ar", "48000"),
    audio_suffix=".webm",
)
FORMATS = {fmt.suffix: fmt for fmt in (MP4, WEBM)}


def output_suffixes() -> list[str]:
    return list(FORMATS)


def format_for(path: Path | str) -> OutputFormat:
    """The format of an output, by its suffix (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(FORMATS)
        raise MediaError(f"output {path} has no known format (its name must end in one of {known})") from None
