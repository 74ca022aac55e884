"""Rendering of job rows shared by `emo plan` and `emo status`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from emo_cli.execution.status import JobRow


def print_json(rows: Sequence[JobRow]) -> None:
    typer.echo(json.dumps([row.to_dict() for row in rows], indent=2))


def shown_path(path: str, base: Path | None = None) -> str:
    """`path` relative to `base` (default: the working folder) when it is under it, else as is."""
    try:
        return os.fspath(Path(path).relative_to(base or Path.cwd()))
    except ValueError:
        return path


def progress_cell(row: JobRow) -> str:
    if row.state == "partial":
        return f"partial {row.chunks_done}/{row.chunks}"
    return row.state


def column_style(column: str) -> dict[str, Any]:
    """Ids and names never wrap (they are copied and pasted); long outputs fold."""
    if column in ("duration", "frames", "chunks"):
        return {"justify": "right", "no_wrap": True}
    if column == "output":
        return {"overflow": "fold"}
    if column == "id":
        return {"no_wrap": True, "min_width": 16}
    return {"no_wrap": True}


def new_table(title: str) -> Table:
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title_justify="left",
        caption_justify="left",
    )


def print_table(table: Table) -> None:
    """Print `table`; into a pipe or log (not a terminal) at its natural width, so no cell wraps
    or is cut and each row stays one line that grep and CI logs show whole."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update_width(100_000)).maximum
        console.width = max(console.width, natural)
    console.print(table, soft_wrap=False)
