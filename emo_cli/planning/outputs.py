"""Where a job's output may go: checks of the planned output path against the file system.

Templates are checked on their own by `emo_cli.manifest.template` (fields, absolute, '..');
these checks need the output_dir and the inputs on disk, so they run at planning, which
`emo validate` runs too. An output must not:

- lie in the work dir (`.emo/` under output_dir), which the render manages and cleans;
- resolve, through a symlinked folder or a symlink at its own name, outside output_dir;
- be an input of the manifest (a portrait, an audio track, a signing file, the manifest
  itself), by path or by being the same file on disk (a hard link);
- sit below a regular file (output_dir or one of the output's folders being a file), or be a
  folder itself;
- have a name (or a folder name) longer than the file system takes, counting the longest name
  the render writes beside it: the sidecar's temporary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from emo_cli.planning.job import WORK_DIRNAME

# The longest name written beside an output: its sidecar `<name>.provenance.json` (see
# `emo_cli.provenance.tags.SIDECAR_SUFFIX`) written through an atomic temporary
# `.<sidecar>.<8 random>.tmp.json` (see `emo_cli.fsutil.AtomicFile`).
LONGEST_SIBLING_EXTRA = len(".") + len(".provenance.json") + len(".12345678.tmp") + len(".json")
DEFAULT_NAME_MAX = 255


class OutputChecks:
    """The checks above for the outputs of one plan: output_dir, its folders and the inputs' files
    are looked at once each, however many jobs there are."""

    def __init__(self, output_dir: Path, inputs: Mapping[Path, str]) -> None:
        self.output_dir = output_dir
        self.real_dir = _resolve(output_dir)
        self.inputs = inputs
        self._inodes: dict[tuple[int, int], str] | None = None
        self._folders: dict[Path, tuple[Path, list[str]]] = {}  # folder -> (resolved, problems)
        self._name_max: int | None = None

    def problems(self, output: Path) -> list[str]:
        """What is wrong with writing `output` (absolute, lexically under output_dir)."""
        relative = output.relative_to(self.output_dir)
        shown = relative.as_posix()
        if relative.parts and relative.parts[0].casefold() == WORK_DIRNAME.casefold():
            return [f"output {shown!r} lies in the work dir {WORK_DIRNAME}/, which emo-cli manages "
                    "(it deletes what it does not know there); choose a path outside it"]  # fmt: skip
        real_parent, problems = self._folder(output.parent)
        real = real_parent / output.name
        exists = os.path.lexists(output)
        if exists and output.is_symlink():
            real = _resolve(output)
        if not _is_within(real, self.real_dir):
            return [f"output {shown!r} resolves to {real} through a symlink, outside output_dir "
                    f"{self.real_dir}; remove the link or choose another path"]  # fmt: skip
        if _is_within(real, self.real_dir / WORK_DIRNAME):
            return [f"output {shown!r} resolves into the work dir {WORK_DIRNAME}/ through a symlink; "
                    "choose a path outside it"]  # fmt: skip
        if problems:
            return problems
        if exists and output.is_dir():
            return [f"output {output} is a folder; an output must be a file (remove the folder or choose "
                    "another name)"]  # fmt: skip
        field = self.inputs.get(real) or (self._same_file(real) if exists else None)
        if field is not None:
            return [f"output {shown!r} is the input {field} ({real}); rendering would overwrite it: "
                    "choose another output or output_dir"]  # fmt: skip
        return self._name_lengths(relative)

    def _folder(self, folder: Path) -> tuple[Path, list[str]]:
        """`folder` (output_dir or below it) resolved, and what stops it from holding files."""
        if folder not in self._folders:
            if folder == self.output_dir:
                problems = _not_a_folder(folder, "output_dir")
                for parent in folder.parents:
                    if not problems and os.path.lexists(parent) and not parent.is_dir():
                        problems = [f"output_dir {folder} lies below {parent}, which is a file, not a folder"]
                self._folders[folder] = (self.real_dir, problems)
            else:
                real_parent, problems = self._folder(folder.parent)
                real = _resolve(folder) if os.path.islink(folder) else real_parent / folder.name
                self._folders[folder] = (real, problems or _not_a_folder(folder, "the output's folder"))
        return self._folders[folder]

    def _same_file(self, path: Path) -> str | None:
        """The field of the input that is `path` on disk (a hard link, another spelling)."""
        if self._inodes is None:
            self._inodes = {}
            for candidate, field in self.inputs.items():
                try:
                    info = os.stat(candidate)
                except OSError:
                    continue
                self._inodes.setdefault((info.st_dev, info.st_ino), field)
        try:
            mine = os.stat(path)
        except OSError:
            return None
        return self._inodes.get((mine.st_dev, mine.st_ino))

    def _name_lengths(self, relative: Path) -> list[str]:
        if self._name_max is None:
            existing = self.output_dir
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            try:
                self._name_max = os.pathconf(existing, "PC_NAME_MAX")
            except (OSError, ValueError):
                self._name_max = DEFAULT_NAME_MAX
        name_max = self._name_max
        parts = relative.parts
        for index, part in enumerate(parts):
            extra = LONGEST_SIBLING_EXTRA if index == len(parts) - 1 else 0
            size = len(os.fsencode(part))
            if size + extra > name_max:
                return [f"output name {part!r} is {size} bytes; the file system takes names of at most "
                        f"{name_max - extra} bytes here ({name_max} less room for the sidecar's temporary); "
                        "shorten it"]  # fmt: skip
        return []


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: the file checks report it
        return Path(os.path.abspath(path))


def _is_within(path: Path, folder: Path) -> bool:
    inner, outer = str(path), str(folder)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _not_a_folder(folder: Path, what: str) -> list[str]:
    if os.path.lexists(folder) and not folder.is_dir():
        if not folder.exists():
            return [f"{what} {folder} is a symlink to {os.readlink(folder)}, which does not exist"]
        return [f"{what} {folder} is a file, not a folder; move it away or choose another path"]
    return []
