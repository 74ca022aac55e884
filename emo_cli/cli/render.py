"""`emo render MANIFEST`: render every job, resuming from checkpoints, with progress."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from emo_cli.cli import app

INTERRUPTED_EXIT = 130


class FramesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} frames/s" if speed else "  ... frames/s", style="progress.data.speed")


class ProgressView:
    """Turns render events into rich progress bars: one for the run, one per job."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            FramesPerSecond(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.overall: Any = None
        self.jobs: dict[str, Any] = {}

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run_started":
            self.overall = self.progress.add_task(f"[bold]{event['jobs']} jobs", total=event["frames"])
        elif kind == "job_started":
            where = f" [dim]{escape(event['device'])}[/]" if event.get("device") else ""
            self.jobs[event["job_id"]] = self.progress.add_task(
                f"  {escape(event['job'])}{where}", total=event["frames"], completed=event["frames_reused"]
            )
            self.progress.advance(self.overall, event["frames_reused"])
        elif kind == "chunk_done":
            self.progress.update(self.jobs[event["job_id"]], completed=event["frames_done"])
            self.progress.advance(self.overall, event["count"])
        elif kind == "job_skipped":
            self.progress.advance(self.overall, event["frames"])
            self.progress.console.print(f"  {escape(event['job'])}: already done ({escape(event['output'])})")
        elif kind == "job_failed":
            task = self.jobs.get(event["job_id"])
            if task is not None:
                self.progress.update(task, description=f"  [red]{escape(event['job'])} (failed)")
        elif kind == "job_retrying":
            self.progress.console.print(
                f"  [yellow]{escape(event['job'])}: the worker on {escape(str(event['device']))} died "
                f"({escape(event['cause'])}); retrying from its last chunk"
            )
        elif kind == "job_held":
            self.progress.console.print(f"  {escape(event['job'])}: waiting, {escape(event['holder'])} renders it")


class PlainLog:
    """One line per finished, skipped or failed job, for logs that are not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "job_done":
            self.console.print(f"done     {event['job']} -> {event['output']} ({event['seconds']:.1f} s)",
                               markup=False, highlight=False)  # fmt: skip
        elif kind == "job_skipped":
            self.console.print(f"skipped  {event['job']}: already done ({event['output']})", markup=False,
                               highlight=False)  # fmt: skip
        elif kind == "job_failed":
            self.console.print(f"failed   {event['error']}", markup=False, highlight=False)
        elif kind == "job_retrying":
            self.console.print(f"retrying {event['job']}: the worker on {event['device']} died ({event['cause']})",
                               markup=False, highlight=False)  # fmt: skip


def json_lines(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def summary_table(summary: Any) -> Table:
    table = Table(title="render summary", title_justify="left")
    for column in ("job", "status", "device", "frames", "chunks rendered", "time", "output / error"):
        table.add_column(column, overflow="fold")
    colour = {"done": "green", "skipped": "cyan", "failed": "red", "held": "yellow"}
    for result in summary.results:
        table.add_row(
            escape(result.job),
            f"[{colour[result.status]}]{result.status}",
            escape(result.device or "-"),
            str(result.frames),
            f"{result.chunks_rendered}/{result.chunks_total}",
            f"{result.seconds:.1f} s",
            escape(result.error if result.error else str(result.output)),
        )
    return table


def credentials_note(summary: Any) -> str | None:
    """A sentence on who signed the outputs' content credentials, when it matters."""
    signers = {r.credentials for r in summary.results if r.status != "failed" and r.credentials}
    local = sorted(s for s in signers if s.startswith("an untrusted local identity"))
    if local:
        return (f"Content credentials are signed by {local[0]}: they show which emo-cli install made "
                "each video but prove nothing to anyone else. Configure a real signing key with "
                "`signing:` in the manifest or EMO_C2PA_KEY / EMO_C2PA_CERTS.")  # fmt: skip
    if "unsupported" in signers:
        return ("Some outputs are in a container C2PA cannot sign (WebM): they carry the provenance tags, "
                "the sidecar (with a note saying so) and the watermark, but no content credentials.")  # fmt: skip
    if signers == {"off"}:
        return "Content credentials are off (settings.provenance.sign: false); the outputs are not signed."
    return None


@app.command()
def render(
    manifest: Annotated[Path, typer.Argument(help="The manifest (YAML) to render.")],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Reuse verified chunks and skip finished jobs (default), or render everything afresh.",
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON event per line on stdout instead of progress bars.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Render only this job (name or id prefix); repeatable.")
    ] = None,
    devices: Annotated[
        str,
        typer.Option(
            "--devices",
            help="Local workers: auto (every visible GPU, plus one CPU worker for CPU-backend jobs; else CPU "
            "workers), cuda, cuda:0,1,3, cpu or cpu:N.",
        ),
    ] = "auto",
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Retries of a job whose worker process died.")
    ] = 2,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="Render only shard INDEX/COUNT of the jobs (by job id), e.g. 0/4."),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="local (worker processes on this machine), ray, or inline (this process, one job at a time).",
        ),
    ] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="With --executor ray: the cluster to join (default: local).")
    ] = None,
    report: Annotated[
        bool,
        typer.Option("--report/--no-report", help="Write the QC report (report.html, report.json) into the "
                     "output_dir at the end (it measures every finished output again)."),
    ] = True,
) -> None:
    """Render a manifest's jobs; an interrupted render resumes where it stopped."""
    from emo_cli.api import render_manifest
    from emo_cli.execution.executors import make_executor

    console = Console()
    where = make_executor(executor, devices=devices, retries=retries, address=address)
    options = dict(resume=resume, only=only, shard=shard, executor=where, report=report)
    try:
        if as_json:
            summary = render_manifest(manifest, events=json_lines, **options)
        elif console.is_terminal:
            with ProgressView(console) as view:
                summary = render_manifest(manifest, events=view, **options)
        else:
            summary = render_manifest(manifest, events=PlainLog(console), **options)
    except KeyboardInterrupt:
        if as_json:
            json_lines({"event": "interrupted"})
        Console(stderr=True).print(
            f"interrupted: finished chunks are kept; run `emo render {escape(str(manifest))}` again to resume.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED_EXIT) from None
    if not as_json:
        console.print(summary_table(summary))
        note = credentials_note(summary)
        if note:
            console.print(note, markup=False, highlight=False, soft_wrap=True)
        if summary.report is not None:
            console.print(f"QC report: {escape(str(summary.report))}", highlight=False)
        if summary.failed:
            console.print(f"[red]{len(summary.failed)} job(s) failed[/]; the others are done. "
                      "Fix the inputs named above and run the same command again.", highlight=False)  # fmt: skip
    raise typer.Exit(summary.exit_code)
