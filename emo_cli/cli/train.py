"""`emo train stage1|stage2|stage3 ...` and `emo train export RUN --out WEIGHTS`: thin commands over
`emo_cli.training.train`."""

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

train_app = typer.Typer(
    cls=CommandGroup,
    name="train", help="Train EMO's three stages on a prepared dataset.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(train_app)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="train.yaml (unset keys take their defaults).")]
DataOpt = Annotated[Path, typer.Option("--data", help="A dataset from `emo dataset prepare`.", show_default=False)]
WeightsOpt = Annotated[Path, typer.Option("--weights", help="Start weights (`emo weights init`, or the export of the "
                                          "stage before).", show_default=False)]  # fmt: skip
OutOpt = Annotated[Path, typer.Option("--out", help="The run folder (checkpoints, metrics, samples).",
                                      show_default=False)]  # fmt: skip
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its newest checkpoint.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON event per line instead of a progress bar.")]


class TrainView:
    """Training events as a rich progress bar with the loss and steps/s."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}  {task.fields[rate]} steps/s"),
                                 TimeRemainingColumn(), console=console)  # fmt: skip
        self.task: Any = None

    def __enter__(self) -> TrainView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        from rich.markup import escape

        kind, say = event["event"], self.progress.console.print
        if kind == "train_started":
            say(f"{event['stage']}: {event['trainable']:,} of {event['parameters']:,} parameters trained on "
                f"{event['device']}" + (f", resuming after step {event['start']}" if event["start"] else ""),
                highlight=False)  # fmt: skip
            self.task = self.progress.add_task(event["stage"], total=event["steps"], completed=event["start"],
                                               loss="-", rate="-")  # fmt: skip
        elif kind == "step":
            self.progress.update(self.task, completed=event["step"], loss=f"{event['loss']:.4f}",
                                 rate=f"{event['steps_per_s']:.2f}")  # fmt: skip
        elif kind == "checkpoint":
            say(f"  checkpoint {escape(event['path'])}", highlight=False)
        elif kind == "sample":
            say(f"  sample {escape(event['path'])}", highlight=False)


def plain_log(console: Console):
    """Training events as plain lines (output to a file or pipe): the start, each checkpoint and sample."""
    last: dict[str, Any] = {}

    def log(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "step":
            last.update(event)
            return
        if kind == "train_started":
            line = (f"{event['stage']}: {event['trainable']:,} of {event['parameters']:,} parameters trained on "
                    f"{event['device']}, steps {event['start'] + 1}..{event['steps']}")  # fmt: skip
        elif kind == "checkpoint":
            line = (f"step {event['step']}: loss {last.get('loss', float('nan')):.4f}, "
                    f"{last.get('steps_per_s', 0.0):.2f} steps/s, checkpoint {event['path']}")  # fmt: skip
        elif kind == "sample":
            line = f"step {event['step']}: sample {event['path']}"
        else:
            return
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    return log


def _json_lines(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _run(stage: str, config: Path | None, data: Path, weights: Path, out: Path, resume: bool, as_json: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    from emo_cli.execution.interrupts import exit_code as interrupt_exit_code
    from emo_cli.execution.interrupts import stop_on_sigterm
    from emo_cli.training.config import load_train_config
    from emo_cli.training.train import train

    settings = load_train_config(config)
    console = Console()
    stop_on_sigterm()  # SIGTERM (a scheduler's stop) ends the run like Ctrl-C: exit 143, Ctrl-C 130
    try:
        if as_json or not console.is_terminal:
            summary = train(stage, config=settings, data=data, weights=weights, out=out, resume=resume,
                            events=_json_lines if as_json else plain_log(console))  # fmt: skip
        else:
            with TrainView(console) as view:
                summary = train(stage, config=settings, data=data, weights=weights, out=out, resume=resume,
                                events=view)  # fmt: skip
    except KeyboardInterrupt:
        Console(stderr=True).print(f"interrupted: checkpoints in {out} are kept; add --resume to continue.",
                                   highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(interrupt_exit_code()) from None
    if not as_json:
        console.print(f"{stage} done: {summary['steps']} steps, newest checkpoint {escape(str(summary['checkpoint']))}; "
                      f"`emo train export {escape(str(out))} --out WEIGHTS` writes the weights.", highlight=False,
                      soft_wrap=True)  # fmt: skip


@train_app.command("stage1")
def stage1(data: DataOpt, weights: WeightsOpt, out: OutOpt, config: ConfigOpt = None, resume: ResumeOpt = False,
           as_json: JsonOpt = False) -> None:  # fmt: skip
    """Image stage: backbone spatial layers, ReferenceNet and face locator on single frames."""
    _run("stage1", config, data, weights, out, resume, as_json)


@train_app.command("stage2")
def stage2(data: DataOpt, weights: WeightsOpt, out: OutOpt, config: ConfigOpt = None, resume: ResumeOpt = False,
           as_json: JsonOpt = False) -> None:  # fmt: skip
    """Video stage: temporal modules, audio-attention and audio projection on n + f frames."""
    _run("stage2", config, data, weights, out, resume, as_json)


@train_app.command("stage3")
def stage3(data: DataOpt, weights: WeightsOpt, out: OutOpt, config: ConfigOpt = None, resume: ResumeOpt = False,
           as_json: JsonOpt = False) -> None:  # fmt: skip
    """Speed stage: temporal modules and speed layers only (audio frozen)."""
    _run("stage3", config, data, weights, out, resume, as_json)


@train_app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="A run folder of `emo train`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The weights folder to write.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
) -> None:
    """Write the run's newest checkpoint as a weights folder `backend: emo` renders with."""
    from rich.console import Console
    from rich.markup import escape

    from emo_cli.training.train import export_run

    index = export_run(run, out, overwrite=force)
    t = index["training"]
    Console().print(f"wrote {escape(str(out))}: {t['stage']} step {t['step']}, weights sha256 "
                    f"{index['content_sha256'][:16]}", highlight=False, soft_wrap=True)  # fmt: skip
