"""One exception root for every expected failure.

An `EmoError`'s message is shown to the user as is (no traceback), so it names the file and
the field at fault and says what to do. The CLI exits with the error's `exit_code`. Anything
that is not an `EmoError` is a bug and shows its traceback (`EMO_DEBUG=1` re-raises all).
"""

from __future__ import annotations

from dataclasses import dataclass


class EmoError(Exception):
    """Root of all expected, user-facing failures."""

    exit_code: int = 1


class UsageError(EmoError):
    """The command line itself is wrong (bad option value, missing file argument)."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem found in a manifest: where it is and what is wrong."""

    file: str
    line: int | None
    col: int | None
    path: str  # JSON path such as "jobs[2].audio"
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}{field} {self.message}"


class ManifestError(EmoError):
    """A manifest is invalid. Carries every problem found, not only the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, col=None, path="", message=problems)]
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in manifest"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class InputError(EmoError):
    """A job's portrait or audio cannot be used (no face, unreadable audio...)."""


class BackendError(EmoError):
    """A backend cannot be found, loaded or configured."""


class WeightsError(BackendError):
    """Model weights are missing, incomplete or inconsistent."""


class MediaError(EmoError):
    """ffmpeg (or PyAV) failed to decode, encode or mux; the message carries its stderr."""


class ProcessKilled(MediaError):
    """A child process (ffmpeg) was killed by a signal (the kernel's out-of-memory killer, an
    operator): not the input's fault, so a pool retries the job like one whose worker died."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class RenderError(EmoError):
    """The render of a job failed for a reason that is not the input's fault."""


class StorageError(EmoError):
    """A file could not be written or read because of the file system (full, read-only, a name
    too long, a file where a folder should be); the message names the file and what to do."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> StorageError:
        return cls(describe_os_error(exc, path))


# What to do about the storage faults a render meets, by errno name.
_STORAGE_ADVICE = {
    "ENOSPC": "the disk is full: free space on it and run the same command again (finished chunks are kept)",
    "EDQUOT": "the disk quota is used up: free space and run the same command again (finished chunks are kept)",
    "EROFS": "the file system is read-only: render to a writable output_dir",
    "EACCES": "permission denied: make the folder writable for this user or render to another output_dir",
    "EPERM": "permission denied: make the folder writable for this user or render to another output_dir",
    "ENAMETOOLONG": "the name is too long for the file system: shorten the output template",
    "ENOTDIR": "a file stands where a folder should be: move it away",
    "EISDIR": "a folder stands where a file should be: move it away",
    "EIO": "the disk reported an I/O error: check the device",
}


def describe_os_error(exc: OSError, path: object = None) -> str:
    """`exc` as one sentence naming the file (`path`, else the error's own) and what to do."""
    import errno as _errno
    import os as _os

    name = _errno.errorcode.get(exc.errno or 0, "")
    where = path if path is not None else exc.filename
    reason = exc.strerror or (_os.strerror(exc.errno) if exc.errno else str(exc))
    advice = _STORAGE_ADVICE.get(name)
    text = f"{where}: {reason}" if where is not None else reason
    return f"{text}; {advice}" if advice else text


class QualityError(EmoError):
    """A quality gate failed (settings.qc with on_fail: fail or retry): names the measure and the chunk."""


class ProvenanceError(EmoError):
    """Signing, watermarking or verifying provenance failed."""
