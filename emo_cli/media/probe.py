"""How long an audio file plays, found by decoding it: the same proof the render relies on."""

from __future__ import annotations

import os
from pathlib import Path

from emo_cli.errors import InputError
from emo_cli.fsutil import NotRegularFileError, open_regular_file, require_regular_file

# (resolved path, size, mtime_ns) -> seconds; a file rewritten in place is probed again.
_durations: dict[tuple[str, int, int], float] = {}


def audio_duration(path: Path | str) -> float:
    """Seconds of audio in `path`, counted in decoded samples of its first audio stream.

    Decoding the whole stream (milliseconds for speech-length files) proves the file is
    usable, where a header's duration could hide a truncated or corrupt file.

    Raises:
        InputError: the file is missing, has no audio stream, or cannot be decoded.
    """
    path = Path(path)
    try:
        stat = require_regular_file(path)
    except FileNotFoundError as exc:
        raise InputError(f"audio {path} does not exist") from exc
    except NotRegularFileError as exc:
        raise InputError(f"audio {path} is {exc.kind}, not an audio file") from exc
    except OSError as exc:
        raise InputError(f"audio {path} cannot be read ({exc.strerror})") from exc
    key = (os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _durations:
        _durations[key] = _decode_duration(path)
    return _durations[key]


def _decode_duration(path: Path) -> float:
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
