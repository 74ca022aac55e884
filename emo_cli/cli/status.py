"""`emo status MANIFEST`: how far each job has rendered, read from its journal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app
from emo_cli.cli._tables import column_style, new_table, print_json, print_table, progress_cell, shown_path


@app.command()
def status(
    manifest: Annotated[Path, typer.Argument(help="The manifest YAML file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Show per-job progress (pending, partial k/n chunks, done, replaced by another job's output)
    without rendering anything."""
    from emo_cli.api import plan_manifest
    from emo_cli.execution.status import plan_status

    planned = plan_manifest(manifest)
    rows = plan_status(planned)
    if as_json:
        print_json(rows)
        return
    counts = Counter(row.state for row in rows)
    summary = ", ".join(
        f"{counts[state]} {state}" for state in ("done", "partial", "pending", "replaced") if counts[state]
    )
    table = new_table(f"{manifest}: {summary or 'no jobs'}")
    for column in ("job", "id", "progress", "chunks", "output"):
        table.add_column(column, **column_style(column))
    for row in rows:
        table.add_row(
            row.name,
            row.id,
            progress_cell(row),
            f"{row.chunks_done}/{row.chunks}",
            shown_path(row.output, planned.output_dir)
            + (f" (holds {row.output_owner}'s video)" if row.output_owner else ""),
        )
    table.caption = f"outputs under {shown_path(str(planned.output_dir))}"
    print_table(table)
