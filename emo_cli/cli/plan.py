"""`emo plan MANIFEST`: the jobs a render would run, with ids, sizes and progress so far."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app
from emo_cli.cli._tables import column_style, new_table, print_json, print_table, progress_cell, shown_path


@app.command()
def plan(
    manifest: Annotated[Path, typer.Argument(help="The manifest YAML file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Show every job of a manifest without rendering: id, backend, duration, frames, chunks, output."""
    from emo_cli.api import plan_manifest
    from emo_cli.execution.status import plan_status

    planned = plan_manifest(manifest)
    rows = plan_status(planned)
    if as_json:
        print_json(rows)
        return
    backends = sorted({row.backend for row in rows})
    columns = ["job", "id", "backend", "duration", "frames", "chunks", "state", "output"]
    if len(backends) == 1:  # one backend: say it once, in the title, to leave room for paths
        columns.remove("backend")
    title = f"{manifest}: {len(rows)} job{'s' if len(rows) != 1 else ''}"
    table = new_table(title + (f" on {backends[0]}" if len(backends) == 1 else ""))
    for column in columns:
        table.add_column(column, **column_style(column))
    for row in rows:
        cells = {
            "job": row.name,
            "id": row.id,
            "backend": row.backend,
            "duration": f"{row.duration:.2f} s",
            "frames": str(row.frames),
            "chunks": str(row.chunks),
            "output": shown_path(row.output, planned.output_dir),
            "state": progress_cell(row),
        }
        table.add_row(*(cells[column] for column in columns))
    table.caption = f"outputs under {shown_path(str(planned.output_dir))}"
    print_table(table)
