"""Atomic file writes: every checkpoint, journal and output appears whole or not at all.

And the one way an input file is opened for reading (`open_regular_file`): a named pipe, a
device or a folder given as a portrait, an audio track or a manifest is refused instead of
blocking forever on a pipe nobody writes or reading /dev/zero without end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_NEW_FILE_MODE: int | None = None


def new_file_mode() -> int:
    """The permissions open() gives a new file: 0o666 less the process's umask."""
    global _NEW_FILE_MODE
    if _NEW_FILE_MODE is None:
        mask = None
        with contextlib.suppress(OSError, ValueError):
            with open("/proc/self/status") as status:  # Linux: read without changing it
                mask = next((int(line.split()[1], 8) for line in status if line.startswith("Umask:")), None)
        if mask is None:
            mask = os.umask(0o022)  # elsewhere: set and restore, once
            os.umask(mask)
        _NEW_FILE_MODE = 0o666 & ~mask
    return _NEW_FILE_MODE


class AtomicFile:
    """A temporary path beside `final`: `commit` fsyncs it and renames it into place, `discard` removes it.

    `atomic_path` in two steps, for a file whose writer finishes later (an ffmpeg still
    draining while the caller goes on). The temporary keeps `final`'s suffix (or `suffix`) so
    tools that guess a format from the name (ffmpeg) still work.
    """

    def __init__(self, final: Path | str, suffix: str | None = None) -> None:
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.final.name}.",
            suffix=".tmp" + (suffix if suffix is not None else self.final.suffix),
            dir=self.final.parent,
        )
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        try:
            # mkstemp makes the temporary owner-only; the file in place gets what open() would give.
            os.chmod(self.tmp, new_file_mode())
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.final)
            _fsync_dir(self.final.parent)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self.final)
            raise
        finally:
            self.discard()

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_path(final: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success fsync it and rename it into place.

    On an exception the temporary is removed and `final` is untouched.
    """
    file = AtomicFile(final, suffix)
    try:
        yield file.tmp
    except OSError as exc:
        file.discard()
        if exc.filename is None:  # a write on an open file (a full disk): name the file
            exc.filename = str(final)
        raise
    except BaseException:
        file.discard()
        raise
    file.commit()


def remove_stale_temporaries(final: Path | str) -> None:
    """Delete the temporaries of `final` that a killed writer left (see `AtomicFile`'s names)."""
    final = Path(final)
    for stale in final.parent.glob(f".{final.name}.*.tmp{final.suffix}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def atomic_write_bytes(final: Path | str, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: Path | str, text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


class NotRegularFileError(OSError):
    """A path that should be a regular file is a folder, a named pipe, a device or a socket."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.filename = os.fspath(path)
        self.strerror = f"it is {kind}, not a regular file"  # for handlers that show strerror
        self.kind = kind


def file_kind(mode: int) -> str:
    """What a stat mode describes, in words: "a folder", "a named pipe (FIFO)"..."""
    for test, kind in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def require_regular_file(path: Path | str) -> os.stat_result:
    """stat `path` (following symlinks) and refuse anything but a regular file, without opening it.

    Raises:
        FileNotFoundError, PermissionError...: as os.stat does.
        NotRegularFileError: it is a folder, a named pipe, a device or a socket.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(path, file_kind(info.st_mode))
    return info


def open_regular_file(path: Path | str) -> BinaryIO:
    """Open `path` for reading in binary mode if (and only if) it is a regular file.

    The path is checked before opening (so a device is never opened) and the open file again
    (so a path swapped for a pipe in between still cannot block: the open does not wait for a
    writer, and the file is refused before any read).

    Raises:
        FileNotFoundError, PermissionError...: as open() does.
        NotRegularFileError: it is a folder, a named pipe, a device or a socket.
    """
    require_regular_file(path)
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    )
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, file_kind(mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file's bytes (a pipe or device is refused: NotRegularFileError)."""
    digest = hashlib.sha256()
    with open_regular_file(path) as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_matches(path: Path | str, sha256: str | None) -> bool:
    """`path` is a readable file whose sha256 is `sha256` (False for None, missing or unreadable)."""
    if sha256 is None:
        return False
    try:
        return sha256_file(path) == sha256
    except OSError:
        return False


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
