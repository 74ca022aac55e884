"""The one place that finds and runs ffmpeg: argv lists, `-nostdin`, its stderr in every error.

Which binary: `FFMPEG_BINARY` if set; else the system `ffmpeg` when `EMO_USE_SYSTEM_FFMPEG=1`;
else the static build that ships with imageio-ffmpeg (libx264, AAC, every common audio
decoder), so a fresh install renders without anything installed system-wide. There is no
ffprobe in that build: metadata is read with PyAV.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from emo_cli.errors import EmoError, MediaError, ProcessKilled, StorageError
from emo_cli.fsutil import AtomicFile

STDERR_TAIL_CHARS = 2000
# Pipe buffer asked for on stdin (Linux caps it at /proc/sys/fs/pipe-max-size, 1 MiB by default):
# a few raw frames instead of the default 64 KiB, so the writer runs ahead of ffmpeg by whole
# frames and both make far fewer system calls and context switches.
PIPE_BYTES = 2**20
# Quiet by default: only errors reach stderr, so a pipe never fills and the tail is the cause.
BASE_ARGS = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to run (see the module docstring for the order)."""
    explicit = os.environ.get("FFMPEG_BINARY")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise MediaError(f"FFMPEG_BINARY={explicit} is not an executable file")
        return explicit
    if os.environ.get("EMO_USE_SYSTEM_FFMPEG") == "1":
        found = shutil.which("ffmpeg")
        if found is None:
            raise MediaError("EMO_USE_SYSTEM_FFMPEG=1 but no ffmpeg is on PATH; unset it to use the bundled one")
        return found
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise MediaError(f"the bundled ffmpeg is missing ({exc}); reinstall imageio-ffmpeg or set FFMPEG_BINARY") from exc


def stderr_tail(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    if len(text) > STDERR_TAIL_CHARS:
        text = "..." + text[-STDERR_TAIL_CHARS:]
    return text or "(no message)"


def ffmpeg_failure(
    what: str, file: Path | str, stderr: bytes | str, *, error: type[EmoError] = MediaError, returncode: int = 1
) -> EmoError:
    """The error to raise when ffmpeg failed on `file` while doing `what` (with what to do about
    a full or read-only disk, which ffmpeg reports in its own words)."""
    tail = stderr_tail(stderr)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the system may have run out of memory)" if -returncode == signal.SIGKILL else ""
        return ProcessKilled(f"cannot {what} {file}: ffmpeg was killed by {name}{hint}", -returncode)
    if "No space left on device" in tail or "Disk quota exceeded" in tail:
        return StorageError(f"cannot {what} {file}: the disk is full; free space on it and run the same command "
                            f"again (finished chunks are kept). ffmpeg says: {tail}")  # fmt: skip
    if "Read-only file system" in tail:
        return StorageError(f"cannot {what} {file}: the file system is read-only; render to a writable "
                            f"output_dir. ffmpeg says: {tail}")  # fmt: skip
    return error(f"cannot {what} {file}: ffmpeg says: {tail}")


def run_ffmpeg(
    args: Sequence[str], *, what: str, file: Path | str, error: type[EmoError] = MediaError
) -> bytes:
    """Run ffmpeg with `args` (after the common flags) and return its stdout.

    Raises `error` (MediaError unless told) naming `file` with the tail of ffmpeg's stderr.
    """
    argv = [ffmpeg_exe(), *BASE_ARGS, *args]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as exc:
        raise error(f"cannot run ffmpeg ({argv[0]}) to {what} {file}: {exc}") from exc
    if proc.returncode != 0:
        raise ffmpeg_failure(what, file, proc.stderr, error=error, returncode=proc.returncode)
    return proc.stdout


class FfmpegProcess:
    """A running ffmpeg whose stderr is drained on a thread (so no pipe can deadlock it).

    Used for the streaming cases, raw frames piped in (segment encode) and raw samples read out
    (audio decode), and by `FfmpegOutput` for every ffmpeg that writes a file while the caller
    goes on. `finish()` waits and raises with the stderr tail on failure.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        what: str,
        file: Path | str,
        stdin: bool = False,
        stdout: bool = False,
        error: type[EmoError] = MediaError,
    ) -> None:
        self.what, self.file, self.error = what, file, error
        argv = [ffmpeg_exe(), *BASE_ARGS, *args]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise error(f"cannot run ffmpeg ({argv[0]}) to {what} {file}: {exc}") from exc
        if stdin and hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):  # a smaller buffer only costs speed
                fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._stderr = bytearray()
        assert self.proc.stderr is not None
        self._drain = threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True)
        self._drain.start()

    def _read_stderr(self, pipe: IO[bytes]) -> None:
        while block := pipe.read(4096):
            self._stderr += block
            del self._stderr[: max(0, len(self._stderr) - 4 * STDERR_TAIL_CHARS)]

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def write(self, data: bytes | memoryview) -> None:
        """Feed stdin; a dead ffmpeg surfaces as the error with its stderr."""
        try:
            self.stdin.write(data)
        except BrokenPipeError:
            self.finish()
            raise self.error(f"ffmpeg stopped reading while it had to {self.what} {self.file}") from None

    def close_input(self) -> None:
        """End of input: ffmpeg finishes on its own; `finish` waits for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def finish(self) -> None:
        self.close_input()
        returncode = self.proc.wait()
        self._drain.join()
        if returncode != 0:
            raise ffmpeg_failure(self.what, self.file, bytes(self._stderr), error=self.error, returncode=returncode)

    def kill(self) -> None:
        """Stop ffmpeg at once (on an error or Ctrl-C in the caller)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._drain.join()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass


class FfmpegOutput:
    """An ffmpeg whose output file appears whole or not at all.

    `args` are everything before the output path: ffmpeg writes a temporary beside `output`,
    which `finish` (once ffmpeg exits cleanly) renames into place; `abort`, or a failure,
    stops ffmpeg and leaves nothing. `process` is the running FfmpegProcess (to feed stdin).
    """

    def __init__(
        self, args: Sequence[str], output: Path, *, what: str, file: Path | str, stdin: bool = False
    ) -> None:
        self._file = AtomicFile(output)
        try:
            tmp = os.fspath(self._file.tmp)
            self.process = FfmpegProcess([*args, tmp], what=what, file=file, stdin=stdin)
        except BaseException:
            self._file.discard()
            raise

    def finish(self) -> None:
        try:
            self.process.finish()
        except BaseException:
            self.abort()
            raise
        self._file.commit()

    def abort(self) -> None:
        self.process.kill()
        self._file.discard()

