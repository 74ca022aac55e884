"""Confinement: rendering manifests submitted by others (a CI service, a render farm's queue).

Unconfined, a manifest is trusted like a Makefile: it may name any file this process can read
(absolute paths, '..', symlinks), write under any output_dir and sign with the key it names.
With `EMO_CONFINE=DIR` (or `emo render --confine DIR`), `load_manifest` (so `emo validate`,
`emo plan`, `emo status` and `emo render`) refuses a manifest unless, after every symlink is
resolved (and before any input is opened):

- the manifest's folder and output_dir are inside DIR;
- every portrait, audio track and backend path option (weights) is inside the manifest's folder;
- it has no `signing:` section: the signing identity then comes only from the environment or
  the user config (`EMO_C2PA_KEY`/`EMO_C2PA_CERTS`, or the local identity), never the manifest.

Outputs are always held inside output_dir (`emo_cli.planning.outputs`), confined or not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emo_cli.backends.registry import get_backend_class
from emo_cli.errors import EmoError, Problem, UsageError
from emo_cli.manifest.model import Manifest

CONFINE_ENV = "EMO_CONFINE"


def confinement_root() -> Path | None:
    """The folder `EMO_CONFINE` names, resolved; None when unset (no confinement).

    Raises:
        UsageError: it names no existing folder.
    """
    value = os.environ.get(CONFINE_ENV, "").strip()
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise UsageError(f"{CONFINE_ENV}={value} (--confine): no such folder")
    return root.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return False
    inner, outer = str(real), str(folder)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def confinement_problems(manifest: Manifest, root: Path) -> list[Problem]:
    """What takes `manifest` outside `root` (see the module docstring)."""
    problems: list[Problem] = []
    folder = manifest.base_dir.resolve()
    if not _inside(folder, root):
        problems.append(manifest.problem((), f"the manifest's folder {folder} is outside the confinement {root}"))
    if not _inside(manifest.output_dir, root):
        where = ("output_dir",) if "output_dir" in manifest.data else ()
        problems.append(manifest.problem(where, f"output_dir resolves to {manifest.output_dir.resolve()}, outside "
                                                f"the confinement {root}"))  # fmt: skip
    if "signing" in manifest.data:
        problems.append(manifest.problem(("signing",), "a confined manifest may not name a signing key: the "
                                         "identity comes from EMO_C2PA_KEY/EMO_C2PA_CERTS or the local one"))  # fmt: skip
    for sources in (manifest.portraits, manifest.audio):
        for source in sources.values():
            if not _inside(source.path, folder):
                problems.append(manifest.problem(source.where, f"resolves to {source.path}, outside the manifest's "
                                                 f"folder {folder} (confined: inputs must be inside it)"))  # fmt: skip
    seen: set[tuple[Any, ...]] = set()
    for spec in manifest.jobs:
        name = spec.settings.get("backend")
        section = spec.settings.get(name) if isinstance(name, str) else None
        if not isinstance(section, Mapping) or (spec.where, name) in seen:
            continue
        seen.add((spec.where, name))
        try:
            cls = get_backend_class(name)
        except EmoError:
            continue  # the backend checks say so
        paths = [k for k, v in cls.options_schema.get("properties", {}).items() if v.get("format") == "path"]
        for key in paths:
            value = section.get(key)
            if isinstance(value, str) and value and not _inside(folder / Path(value).expanduser(), folder):
                problems.append(manifest.problem(spec.where, f"option {name}.{key} ({value}) resolves outside the "
                                                 f"manifest's folder {folder} (confined: paths must be inside it)"))  # fmt: skip
    return problems
