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


def output_problems(output: Path, output_dir: Path, inputs: Mapping[Path, str]) -> list[str]:
    """What is wrong with writing `output` (absolute, lexically under `output_dir`), given the
    manifest's `inputs` (resolved path -> the field that names it)."""
    relative = output.relative_to(output_dir)
    if relative.parts and relative.parts[0].casefold() == WORK_DIRNAME.casefold():
        return [f"output {relative.as_posix()!r} lies in the work dir {WORK_DIRNAME}/, which emo-cli manages "
                "(it deletes what it does not know there); choose a path outside it"]  # fmt: skip
    real_dir = _resolve(output_dir)
    real = _resolve(output)
    if not _is_within(real, real_dir):
        return [f"output {relative.as_posix()!r} resolves to {real} through a symlink, outside output_dir "
                f"{real_dir}; remove the link or choose another path"]  # fmt: skip
    if _is_within(real, real_dir / WORK_DIRNAME):
        return [f"output {relative.as_posix()!r} resolves into the work dir {WORK_DIRNAME}/ through a symlink; "
                "choose a path outside it"]  # fmt: skip
    problems = _not_a_folder(output, output_dir)
    if problems:
        return problems
    field = inputs.get(real) or _same_file(real, inputs)
    if field is not None:
        return [f"output {relative.as_posix()!r} is the input {field} ({real}); rendering would overwrite it: "
                "choose another output or output_dir"]  # fmt: skip
    return _name_lengths(output, output_dir)


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: the file checks report it
        return Path(os.path.abspath(path))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _same_file(path: Path, inputs: Mapping[Path, str]) -> str | None:
    """The field of the input that is `path` on disk (a hard link, another spelling)."""
    try:
        mine = os.stat(path)
    except OSError:
        return None
    for candidate, field in inputs.items():
        try:
            other = os.stat(candidate)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (mine.st_dev, mine.st_ino):
            return field
    return None


def _not_a_folder(output: Path, output_dir: Path) -> list[str]:
    """output_dir or a folder of the output being something else than a folder, or the output a folder."""
    if output.is_dir():
        return [f"output {output} is a folder; an output must be a file (remove the folder or choose another name)"]
    for folder in [output_dir, *(output_dir / p for p in reversed(output.relative_to(output_dir).parents[:-1]))]:
        if os.path.lexists(folder) and not folder.is_dir():
            what = "output_dir" if folder == output_dir else "the output's folder"
            if not folder.exists():
                return [f"{what} {folder} is a symlink to {os.readlink(folder)}, which does not exist"]
            return [f"{what} {folder} is a file, not a folder; move it away or choose another path"]
    for parent in output_dir.parents:
        if os.path.lexists(parent) and not parent.is_dir():
            return [f"output_dir {output_dir} lies below {parent}, which is a file, not a folder"]
    return []


def _name_lengths(output: Path, output_dir: Path) -> list[str]:
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = DEFAULT_NAME_MAX
    parts = output.relative_to(output_dir).parts
    for index, part in enumerate(parts):
        extra = LONGEST_SIBLING_EXTRA if index == len(parts) - 1 else 0
        size = len(os.fsencode(part)) + extra
        if size > name_max:
            room = name_max - extra
            return [f"output name {part!r} is {len(os.fsencode(part))} bytes; the file system takes names of "
                    f"at most {room} bytes here ({name_max} less room for the sidecar's temporary); shorten it"]  # fmt: skip
    return []
