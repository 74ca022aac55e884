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


class RenderError(EmoError):
    """The render of a job failed for a reason that is not the input's fault."""


class QualityError(EmoError):
    """A quality gate failed (settings.qc with on_fail: fail or retry): names the measure and the chunk."""


class ProvenanceError(EmoError):
    """Signing, watermarking or verifying provenance failed."""
