"""`emo qc VIDEO`: measure a video (lip-sync, silence, drift, sharpness, jitter, blinks, duration,
provenance), print the figures and a verdict; exit 0 pass, 1 fail, 2 unreadable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from emo_cli.cli import app
from emo_cli.quality.thresholds import Thresholds

_D = Thresholds()  # the defaults, shown in --help

UNREADABLE_EXIT = 2
_MARK = {True: "[green]pass[/]", False: "[bold red]FAIL[/]", None: "[dim]n/a[/]"}


@app.command()
def qc(
    video: Annotated[Path, typer.Argument(help="The video to measure.", dir_okay=False, show_default=False)],
    audio: Annotated[
        Path | None,
        typer.Option("--audio", help="The input audio it was made from: the duration gate compares with it.",
                     dir_okay=False),
    ] = None,
    portrait: Annotated[
        Path | None,
        typer.Option("--portrait", help="The portrait it was made from: the reference for drift and sharpness "
                     "(default: the first frame).", dir_okay=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as one JSON object.")] = False,
    chunk_frames: Annotated[
        int | None,
        typer.Option("--chunk-frames", min=1, help="Frames per chunk for the drift measures (default: as the "
                     "video's tags say it was rendered, else 50)."),
    ] = None,
    min_lip_sync: Annotated[float | None, typer.Option("--min-lip-sync", help=f"Least correlation of mouth and loudness [{_D.lip_sync_min_r:g}].")] = None,
    max_lag: Annotated[int | None, typer.Option("--max-lag", min=0, help=f"Largest |lag| between mouth and sound, frames [{_D.max_lag_frames}].")] = None,
    min_closed: Annotated[float | None, typer.Option("--min-closed", help=f"Least share of silent frames with the mouth closed [{_D.rest_min_closed:g}].")] = None,
    min_ssim: Annotated[float | None, typer.Option("--min-ssim", help=f"Least upper-face SSIM per chunk [{_D.min_ssim:g}].")] = None,
    max_delta_e: Annotated[float | None, typer.Option("--max-delta-e", help=f"Largest colour shift per chunk, face and background, CIE76 [{_D.max_delta_e_face:g}].")] = None,
    min_sharpness: Annotated[float | None, typer.Option("--min-sharpness", help=f"Least sharpness relative to the reference, per chunk [{_D.min_sharpness:g}].")] = None,
    max_jitter: Annotated[float | None, typer.Option("--max-jitter", help=f"Largest landmark jitter, px per frame [{_D.max_jitter_px:g}].")] = None,
    provenance: Annotated[
        bool, typer.Option("--provenance/--no-provenance", help="Gate on provenance (tags, sidecar, C2PA, watermark).")
    ] = True,
) -> None:
    """Measure a talking-head video and gate it: exit 0 when every gate passes, 1 when one fails,
    2 when the video (or --audio, --portrait) cannot be read."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo_cli.errors import EmoError
    from emo_cli.quality import measure_video

    thresholds = _D.with_overrides(
        lip_sync_min_r=min_lip_sync, max_lag_frames=max_lag, rest_min_closed=min_closed, min_ssim=min_ssim,
        max_delta_e_face=max_delta_e, max_delta_e_background=max_delta_e, min_sharpness=min_sharpness,
        max_jitter_px=max_jitter, require_provenance=provenance,
    )  # fmt: skip
    try:
        report = measure_video(video, audio=audio, portrait=portrait, thresholds=thresholds, chunk_frames=chunk_frames)
    except EmoError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(UNREADABLE_EXIT) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        raise typer.Exit(report.exit_code)
    console = Console()
    title = (f"{escape(str(video))}: {report.frames} frames at {report.fps:g} fps, {report.width}x{report.height}, "
             f"reference: {escape(report.reference)}")  # fmt: skip
    table = Table(title=title, title_justify="left")
    for column in ("gate", "result", "measured", "pass mark"):
        table.add_column(column, overflow="fold", no_wrap=column == "result")
    for gate in report.gates:
        measured = gate.value + (f"\n{gate.detail}" if gate.detail and gate.passed is not True else "")
        table.add_row(escape(gate.name), _MARK[gate.passed], escape(measured), escape(gate.limit))
    console.print(table)
    style = "green" if report.passed else "bold red"
    console.print(f"[{style}]{escape(report.verdict())}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(report.exit_code)
