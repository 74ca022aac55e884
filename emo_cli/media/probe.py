"""How long an audio file plays, found by decoding it: the same proof the render relies on.

A plain PCM WAV file (what recorders and the demo write) is read with the standard library's
`wave`, its samples counted from its data chunk once its last sample is known to be there: no
decoder to load, the same count PyAV gives. Any other file, or a WAV that is not plainly whole,
is decoded with PyAV.

Decoding is bounded: a track longer than `max_audio_seconds()` (`EMO_MAX_AUDIO_SECONDS`,
default 4 hours) is refused as soon as that much has been decoded, so a small file of hours of
compressed silence cannot tie up validation, or the render's decoded buffer (4 bytes a sample).
"""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Any

from emo_cli.errors import InputError, MediaError, UsageError
from emo_cli.fsutil import NotRegularFileError, open_regular_file, require_regular_file

MAX_SECONDS_ENV = "EMO_MAX_AUDIO_SECONDS"
DEFAULT_MAX_SECONDS = 4 * 3600


def require_audio_file(path: Path) -> os.stat_result:
    """`path`'s stat if it is a regular file (ffmpeg would wait forever on a named pipe nobody
    writes, and a folder or device is no audio).

    Raises:
        InputError: missing, not a regular file, or unreadable, naming the file.
    """
    try:
        return require_regular_file(path)
    except FileNotFoundError as exc:
        raise InputError(f"audio {path} does not exist") from exc
    except NotRegularFileError as exc:
        raise InputError(f"audio {path} is {exc.kind}, not an audio file") from exc
    except OSError as exc:
        raise InputError(f"audio {path} cannot be read ({exc.strerror})") from exc

def max_audio_seconds() -> float:
    """The longest audio track accepted: EMO_MAX_AUDIO_SECONDS or 4 hours.

    Raises:
        UsageError: the environment variable is not a positive number of seconds.
    """
    text = os.environ.get(MAX_SECONDS_ENV, "").strip()
    if not text:
        return float(DEFAULT_MAX_SECONDS)
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise UsageError(
            f"{MAX_SECONDS_ENV}={os.environ[MAX_SECONDS_ENV]!r} is not a positive number of seconds"
        )
    return value


# (resolved path, size, mtime_ns) -> seconds; a file rewritten in place is probed again.
_durations: dict[tuple[str, int, int], float] = {}


def audio_duration(path: Path | str) -> float:
    """Seconds of audio in `path`, counted in decoded samples of its first audio stream.

    Decoding the whole stream (milliseconds for speech-length files) proves the file is
    usable, where a header's duration could hide a truncated or corrupt file.

    Raises:
        InputError: the file is missing, not a regular file, has no audio stream, cannot be
            decoded, or plays longer than `max_audio_seconds()`.
    """
    path = Path(path)
    limit = max_audio_seconds()
    stat = require_audio_file(path)
    key = (os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _durations:
        _durations[key] = _decode_duration(path, limit)
    if _durations[key] > limit:
        raise InputError(_too_long(path, limit))
    return _durations[key]


def _too_long(path: Path, limit: float) -> str:
    return (
        f"audio {path} plays longer than {limit:g} s, the limit: cut it into parts, or raise the "
        f"limit with {MAX_SECONDS_ENV} if the track is genuine"
    )


def _decode_duration(path: Path, limit: float) -> float:
    seconds = _pcm_wav_seconds(path)
    if seconds is None:
        seconds = _av_duration(path, limit)
    elif seconds > limit:
        raise InputError(_too_long(path, limit))
    return seconds


def _pcm_wav_seconds(path: Path) -> float | None:
    """Seconds of a whole PCM WAV file, from its header, or None when it is not one (compressed,
    float or extensible WAV, another format, a truncated or open-ended data chunk, no samples):
    PyAV then decodes it and says what is wrong, if anything."""
    try:
        with open_regular_file(path) as source, wave.open(source) as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
            if frames <= 0 or rate <= 0:
                return None
            block = wav.getnchannels() * wav.getsampwidth()
            wav.setpos(frames - 1)  # the last sample the header promises must be in the file
            if len(wav.readframes(1)) != block:
                return None
    except (wave.Error, EOFError, OSError, ValueError):
        return None
    return frames / rate


def _av_duration(path: Path, limit: float) -> float:
    import av

    try:
        # Decoded from the file opened here, which is known to be a regular file: a path
        # swapped for a pipe after the check above cannot make the decoder wait.
        with open_regular_file(path) as source, av.open(source) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise InputError(f"audio {path} has no audio stream")
            samples = 0
            rate = stream.codec_context.sample_rate or 0
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
                if rate > 0 and samples > limit * rate:
                    raise InputError(_too_long(path, limit))
    except av.FFmpegError as exc:  # before OSError: some of PyAV's errors are OSErrors too
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"audio {path} cannot be decoded ({reason})") from exc
    except NotRegularFileError as exc:
        raise InputError(f"audio {path} is {exc.kind}, not an audio file") from exc
    except OSError as exc:
        raise InputError(f"audio {path} cannot be read ({exc.strerror})") from exc
    if samples == 0 or rate <= 0:
        raise InputError(f"audio {path} contains no audio samples")
    return samples / rate


def open_video(path: Path) -> Any:
    """`path` opened by PyAV (a container to close, e.g. `with open_video(path) as container:`).

    Raises:
        MediaError: PyAV cannot open it (not a video, damaged, unreadable), naming the file.
    """
    import av

    try:
        return av.open(os.fspath(path))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot open {path} as a video: {exc}") from exc
