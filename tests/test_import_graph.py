"""The packages stack: each imports only the ones below it, so no two depend on each other.

    cli -> api -> training -> execution -> quality -> provenance -> planning -> manifest -> backends -> media
        -> fsutil / errors / lazy / __version__

Walks every module's imports with `ast` (inside functions too: a lazy import is still a
dependency; only `if TYPE_CHECKING:` blocks are skipped) and fails on an edge that runs up
the stack or on a cycle between units. A new subpackage must be given its place here. `from emo_cli import __version__` counts as
the bottom of the stack: the package's `__init__` computes it lazily and imports nothing else.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emo_cli"

# Top to bottom; units on one line share a rank and may not import each other in a cycle.
STACK: list[tuple[str, ...]] = [
    ("__init__", "__main__"),  # the package's face: lazy re-exports of api, `python -m emo_cli`
    ("cli",),
    ("api",),
    ("training",),  # dataset preparation and training: uses execution's job lease
    ("execution",),
    ("quality",),  # measures of rendered videos: the chunk loop may call them
    ("provenance",),
    ("planning",),
    ("manifest",),
    ("backends",),
    ("media",),
    ("fsutil", "errors", "lazy", "__version__"),
]
RANK = {unit: rank for rank, units in enumerate(STACK) for unit in units}


def unit_of_file(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def module_name(path: Path) -> str:
    parts = ("emo_cli", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_units(path: Path) -> set[tuple[str, int]]:
    """(unit, line) of every `emo_cli` module that `path` imports, outside TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "emo_cli":  # `from emo_cli import x`: the submodule x, else the package face
                names = [f"emo_cli.{a.name}" if a.name == "__version__" or (PACKAGE / a.name).exists()
                         or (PACKAGE / f"{a.name}.py").exists() else "emo_cli.__init__" for a in node.names]  # fmt: skip
            else:
                names = [base]
        for name in names:
            parts = name.split(".")
            if parts[0] == "emo_cli" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def edges() -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of_file(path)
        for target, line in imported_units(path):
            if target != source:
                out.setdefault((source, target), []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return out


def test_every_unit_has_a_place_in_the_stack():
    units = {unit_of_file(p) for p in PACKAGE.rglob("*.py")} | {dst for _, dst in edges()}
    assert units - RANK.keys() == set(), "give each new subpackage or module its rank in STACK"


def test_no_import_runs_up_the_stack():
    upward = [f"{where}: {src} imports {dst}" for (src, dst), places in edges().items()
              if RANK.get(dst, -1) < RANK.get(src, -1) for where in places]  # fmt: skip
    assert upward == []


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for src, dst in edges():
        graph.setdefault(src, set()).add(dst)
    cycles = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join((*trail, nxt)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*trail, nxt)))
    assert cycles == []


@pytest.mark.parametrize("command", ["validate", "plan", "schema", "status"])
def test_light_commands_never_import_torch_ray_or_the_render_loop(command):
    """What `emo validate` and friends import at start-up: no torch, no Ray, no execution."""
    import subprocess
    import sys

    code = (
        "import sys, emo_cli.cli\n"
        f"import emo_cli.cli.{command}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'diffusers')"
        " or m in ('emo_cli.execution.jobs', 'emo_cli.execution.pool', 'emo_cli.provenance.credentials'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
