"""Atomic file writes: every checkpoint, journal and output appears whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
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
