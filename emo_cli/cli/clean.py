"""`emo clean MANIFEST...`: remove the work dirs no current job uses and the chunks of finished
jobs, and say how much was freed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


@app.command()
def clean(
    manifests: Annotated[
        list[Path],
        typer.Argument(
            help="The manifest(s) whose jobs stay; give every manifest that renders into the same output_dir.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    keep_current: Annotated[
        bool,
        typer.Option("--keep-current", help="Remove only the work dirs no current job uses; keep the chunks "
                     "of finished current jobs."),
    ] = False,  # fmt: skip
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Remove what no render needs: the work dirs (.emo/jobs/<id>) that no current job of the
    manifests uses, and the chunks of the current jobs that are finished.

    A finished job keeps its journal, so the next render still skips it; if its output is
    deleted, it is rendered again from scratch. --keep-current keeps every current job's work
    dir whole (a deleted output is then made again from its chunks, without rendering). Outputs
    and sidecars are never touched, nor is any work dir a running render holds.
    """
    from emo_cli.api import clean_manifests

    report = clean_manifests(manifests, dry_run=dry_run, keep_current=keep_current)
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, **report.to_dict()}, indent=1))
        return
    verb = "would remove" if dry_run else "removed"
    for entry in report.removed:
        typer.echo(f"{verb} {entry.path} ({_size(entry.bytes)})")
    for entry in report.emptied:
        typer.echo(f"{verb} the chunks of {entry.path} ({_size(entry.bytes)}): its job is finished")
    for entry in report.held:
        typer.echo(f"kept    {entry.path}: in use by {entry.holder}")
    freed = "would free" if dry_run else "freed"
    emptied = f", the chunks of {len(report.emptied)} finished job(s)" if report.emptied else ""
    typer.echo(f"{len(report.removed)} unused work dir(s){emptied} {verb}, {freed} {_size(report.freed_bytes)}; "
               f"{report.kept} current job(s) kept" + (f", {len(report.held)} in use" if report.held else ""))  # fmt: skip
