"""`emo report MANIFEST`: measure every finished job and write report.html and report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app
from emo_cli.cli._tables import new_table, print_table, shown_path


@app.command()
def report(
    manifest: Annotated[Path, typer.Argument(help="The manifest YAML file.", show_default=False)],
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Where to write report.html and report.json (default: the manifest's "
                     "output_dir).", file_okay=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json instead of a table.")] = False,
) -> None:
    """Write one self-contained HTML page (and report.json) on a manifest's outputs: per job a
    contact sheet, mouth aperture against loudness, the quality gates, provenance and timings.

    Exit 0 when every job is rendered and passes every gate, 1 otherwise, 2 on an invalid manifest.
    """
    from rich.markup import escape

    from emo_cli.api import report_manifest

    result = report_manifest(manifest, output_dir=output_dir)
    if as_json:
        typer.echo(result.json.read_text(encoding="utf-8"), nl=False)
        raise typer.Exit(result.exit_code)
    table = new_table(f"{manifest}: {sum(j.passed for j in result.jobs)} of {len(result.jobs)} jobs pass")
    for column in ("job", "state", "qc", "failed gates"):
        table.add_column(column, overflow="fold" if column == "failed gates" else None)
    for job in result.jobs:
        qc = "unreadable" if job.error else "-" if job.qc is None else ("pass" if job.passed else "FAIL")
        failed = (job.error or "") if job.qc is None else ", ".join(g.name + (f" (chunk {g.chunk})" if g.chunk is not None else "")
                                                     for g in job.qc.failed)  # fmt: skip
        table.add_row(escape(job.name), job.state, qc, escape(failed))
    table.caption = f"wrote {shown_path(str(result.html))} and {shown_path(str(result.json))}"
    print_table(table)
    raise typer.Exit(result.exit_code)
