"""`emo verify VIDEO`: is this video marked as AI-generated? Credentials, tags, watermark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app

UNREADABLE_EXIT = 2


@app.command()
def verify(
    video: Annotated[
        Path, typer.Argument(help="The video to check.", exists=True, dir_okay=False, readable=True)
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full report as one JSON object.")
    ] = False,
    trust_anchor: Annotated[
        Path | None,
        typer.Option(
            "--trust-anchor",
            help="A PEM root certificate to trust: credentials that chain to it read 'trusted'.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Check a video's C2PA credentials, provenance tags, sidecar and invisible watermark.

    Exit 0 when the video is marked as AI-generated, 1 when no mark is found, 2 when the file
    cannot be read as a video.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo_cli.errors import EmoError
    from emo_cli.provenance.verify import verify_video

    try:
        report = verify_video(video, trust_anchor=trust_anchor)
    except EmoError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(UNREADABLE_EXIT) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        raise typer.Exit(report.exit_code)
    console = Console()
    table = Table(title=escape(str(video)), title_justify="left", show_header=False)
    table.add_column("check", style="bold")
    table.add_column("result", overflow="fold")
    cred = report.credentials
    c2pa = "not supported for this format" if cred.status == "unsupported" else cred.status
    if cred.status not in ("absent", "unsupported"):
        c2pa += f" ({'AI-generated' if cred.ai_generated else 'no AI source type'}"
        c2pa += f", signed by {cred.signer})" if cred.signer else ")"
        if cred.failures:
            c2pa += "; " + "; ".join(cred.failures)
        if cred.status == "valid":
            c2pa += "; signature and hashes check out, signer not trusted (see --trust-anchor)"
    if report.c2pa_note:
        c2pa = report.c2pa_note
    table.add_row("C2PA credentials", escape(c2pa))
    table.add_row("container tags", escape(f"{len(report.tags)} emo-cli tags") if report.tags else "none")
    side = report.sidecar
    if not side.present:
        sidecar = "absent"
    else:
        sidecar = (
            "present, matches" if side.matches else "present, does NOT match: " + "; ".join(side.problems)
        )
    table.add_row("sidecar", escape(sidecar))
    wm = report.watermark
    if wm.marked:
        match = {True: ", matches the job id in the tags", False: ", does NOT match the job id in the tags",
                 None: ""}[report.watermark_matches_job]  # fmt: skip
        mark = f"job {wm.job_id_prefix}, confidence {wm.confidence:.2f} over {wm.frames} frames{match}"
    elif wm.job_id_prefix is None:
        mark = f"none found (no valid payload in {wm.frames} frames)"
    else:
        mark = f"none found (payload {wm.job_id_prefix} read with confidence {wm.confidence:.2f}, below the threshold)"
    table.add_row("watermark", escape(mark))
    console.print(table)
    console.print(escape(report.verdict()), highlight=False, soft_wrap=True)
    raise typer.Exit(report.exit_code)
