"""`emo plan MANIFEST`: the jobs a render would run, with ids, sizes and progress so far."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emo_cli.cli import app
from emo_cli.cli._tables import column_style, print_json, print_table, progress_cell, shown_path


@app.command()
def plan(
    manifest: Annotated[Path, typer.Argument(help="The manifest YAML file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Show every job of a manifest without rendering: id, backend, duration, frames, chunks, output."""
    from emo_cli.planning import plan_manifest
    from emo_cli.planning.progress import plan_status

    rows = plan_status(plan_manifest(manifest))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{manifest}: {len(rows)} job{'s' if len(rows) != 1 else ''}")
    for column in ("job", "id", "backend", "duration", "frames", "chunks", "output", "state"):
        table.add_column(column, **column_style(column))
    for row in rows:
        table.add_row(
            row.name,
            row.id,
            row.backend,
            f"{row.duration:.2f} s",
            str(row.frames),
            str(row.chunks),
            shown_path(row.output),
            progress_cell(row),
        )
    print_table(table)
