"""`emo dataset prepare VIDEOS... --out DATA`: source videos -> a training dataset, with progress."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emo_cli.cli import app
from emo_cli.cli.plugins import CommandGroup

if TYPE_CHECKING:
    from rich.console import Console

dataset_app = typer.Typer(
    cls=CommandGroup,
    name="dataset", help="Prepare training data from your own footage.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(dataset_app)


class PrepareView:
    """Prepare events as rich progress: one bar for the videos, one per video in hand."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console)  # fmt: skip
        self.overall: Any = None
        self.videos: dict[str, Any] = {}  # video -> its task (workers prepare several at once)

    def __enter__(self) -> PrepareView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        from rich.markup import escape

        kind, say = event["event"], self.progress.console.print
        video = event.get("video")
        if kind == "prepare_started":
            self.overall = self.progress.add_task("[bold]videos", total=event["videos"])
        elif kind == "video_started":
            self.videos[video] = self.progress.add_task(f"  {escape(Path(video).name)} (2 passes)",
                                                        total=event["total"])  # fmt: skip
        elif kind == "video_progress" and video in self.videos:
            self.progress.update(self.videos[video], completed=event["done"], total=event["total"])
        elif kind in ("video_done", "video_skipped", "video_failed"):
            self.progress.advance(self.overall)
            task = self.videos.pop(video, None)
            if task is not None:
                self.progress.remove_task(task)
            if kind == "video_done":
                say(f"  {escape(video)}: {event['clips']} clips, {event['frames']} frames", highlight=False)
            elif kind == "video_skipped":
                say(f"  {escape(video)}: already prepared", highlight=False)
            else:
                say(f"  [red]skipped[/] {escape(event['error'])}", highlight=False, soft_wrap=True)


def json_lines(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def plain_log(console: Console):
    def log(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "video_done":
            line = f"prepared {event['video']}: {event['clips']} clips, {event['frames']} frames"
        elif kind == "video_skipped":
            line = f"skipped  {event['video']}: already prepared"
        elif kind == "video_failed":
            line = f"failed   {event['error']}"
        else:
            return
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    return log


@dataset_app.command("prepare")
def prepare(
    videos: Annotated[list[Path], typer.Argument(help="Video files, or folders of them.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The dataset folder to write (or resume).", show_default=False)],
    identity: Annotated[
        Path | None,
        typer.Option("--identity", help="YAML/JSON map of video file -> person filmed; unnamed videos are each "
                     "their own identity. Train and val never share an identity."),  # fmt: skip
    ] = None,
    resolution: Annotated[int, typer.Option(help="Side of the square training crops, in pixels.")] = 512,
    min_clip_seconds: Annotated[float, typer.Option(help="Shorter face tracks are dropped.")] = 1.0,
    max_clip_seconds: Annotated[float, typer.Option(help="Longer face tracks are split into clips.")] = 20.0,
    val_fraction: Annotated[float, typer.Option(help="Share of identities held out for validation.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the identity split.")] = 0,
    speed_buckets: Annotated[int, typer.Option(help="Head-speed buckets fitted to the data's quantiles.")] = 9,
    crf: Annotated[int, typer.Option(help="H.264 quality of the stored crops (0 lossless, lower is better).")] = 14,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete prepared videos in --out that are not in this index.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Videos prepared at once, each in its own process.")
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON event per line on stdout instead of progress and a table.")
    ] = False,
) -> None:
    """Decode, track the face, crop, measure head speed and write an indexed, split dataset.

    Finished videos are skipped, so an interrupted run resumes. Exits 1 when a video was skipped
    for an error (the others are prepared), 128 + the signal when stopped (130 on Ctrl-C, 143 on
    SIGTERM).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo_cli.execution.interrupts import exit_code as interrupt_exit_code
    from emo_cli.execution.interrupts import stop_on_sigterm
    from emo_cli.training import PrepareSettings, prepare_dataset
    from emo_cli.training.prepare import load_identities

    settings = PrepareSettings(resolution=resolution, min_clip_seconds=min_clip_seconds,
                               max_clip_seconds=max_clip_seconds, val_fraction=val_fraction, split_seed=split_seed,
                               speed_buckets=speed_buckets, crf=crf)  # fmt: skip
    identities = load_identities(identity) if identity is not None else None
    console = Console()
    options = dict(prune=prune, workers=workers)
    stop_on_sigterm()  # SIGTERM (a scheduler's stop) ends the run like Ctrl-C: exit 143, Ctrl-C 130
    try:
        if as_json:
            summary = prepare_dataset(videos, out, settings, identities, events=json_lines, **options)
            raise typer.Exit(summary.exit_code)
        if console.is_terminal:
            with PrepareView(console) as view:
                summary = prepare_dataset(videos, out, settings, identities, events=view, **options)
        else:
            summary = prepare_dataset(videos, out, settings, identities, events=plain_log(console), **options)
    except KeyboardInterrupt:
        if as_json:
            json_lines({"event": "interrupted"})
        Console(stderr=True).print("interrupted: prepared videos are kept; run the same command again to resume.",
                                   highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(interrupt_exit_code()) from None
    table = Table(title="dataset prepare", title_justify="left")
    for column in ("video", "status", "identity", "clips", "frames", "time / error"):
        table.add_column(column, overflow="fold")
    colour = {"prepared": "green", "skipped": "cyan", "failed": "red"}
    for v in summary.videos:
        table.add_row(escape(v.source), f"[{colour[v.status]}]{v.status}", escape(v.identity or "-"), str(v.clips),
                      str(v.frames), escape(v.error) if v.error else f"{v.seconds:.1f} s")  # fmt: skip
    console.print(table)
    if summary.unmapped:
        console.print(f"{len(summary.unmapped)} video(s) not named in {escape(str(identity))}: each is its own "
                      "identity.", highlight=False)  # fmt: skip
    if summary.stale:
        console.print(f"{len(summary.stale)} prepared video(s) in {escape(str(out))} are not in this index (changed "
                      "or left out); --prune deletes them.", highlight=False)  # fmt: skip
    if summary.pruned:
        console.print(f"pruned {len(summary.pruned)} prepared video(s) not in this index.", highlight=False)
    if summary.index is None:
        console.print("[red]no video yielded a training clip[/]: no index written.", highlight=False)
    else:
        parts = ", ".join(f"{name} {s['clips']} clips / {s['frames']} frames" for name, s in summary.splits.items())
        console.print(f"index: {escape(str(summary.index))} ({parts}); fingerprint {summary.fingerprint[:16]}",
                      highlight=False, soft_wrap=True)  # fmt: skip
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} video(s) skipped for errors[/]; fix them and run the same "
                      "command again (prepared videos are kept).", highlight=False)  # fmt: skip
    raise typer.Exit(summary.exit_code)


@dataset_app.command("info")
def info(
    data: Annotated[Path, typer.Argument(help="A prepared dataset folder.", show_default=False)],
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash every file against the index.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Show a prepared dataset: fingerprint, splits, hours, head-speed distribution, what was dropped.

    Exits 1 when --verify finds a file that no longer matches the index.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo_cli.training.data import TrainingData
    from emo_cli.training.index import dataset_summary

    if verify:
        TrainingData(data, "all", verify=True)
    summary = dataset_summary(data)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    console = Console()
    console.print(f"{escape(str(data))}: fingerprint {summary['fingerprint']}"
                  + (" (every file verified)" if verify else ""), highlight=False, soft_wrap=True)  # fmt: skip
    table = Table(title_justify="left")
    for column in ("split", "identities", "clips", "frames", "hours"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, split in summary["splits"].items():
        table.add_row(name, str(split["identities"]), str(split["clips"]), str(split["frames"]), f"{split['hours']:.2f}")
    console.print(table)
    speed = summary["speed"]
    console.print(f"head speed (degrees/frame, {speed['fitted_on']} clips): 10% {speed['p10']:.3f}, median "
                  f"{speed['p50']:.3f}, 90% {speed['p90']:.3f}", highlight=False)  # fmt: skip
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items() if v) or "none"
    console.print(f"source frames: {summary['source_frames']}, dropped: {dropped}", highlight=False)
    for failed in summary["failed"]:
        console.print(f"[red]failed[/] {escape(failed['error'])}", highlight=False, soft_wrap=True)
