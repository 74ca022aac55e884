"""`emo render MANIFEST`: render every job, resuming from checkpoints, with progress."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emo_cli.cli import app

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.table import Table

    from emo_cli.execution.results import RenderEvent


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressView:
    """A bounded live region for a terminal, whatever the number of jobs: the run's bar, one line
    per running job, and a rolling count of done, skipped, failed and held jobs. A finished job
    leaves the region and prints one line above it, so the region never outgrows the terminal;
    when more jobs run than it has rows, the last line says how many are not shown.

    Rates are honest: frames rendered in this run (reused chunks do not count) over the time spent
    rendering them; the ETA divides the frames left by the run's rate.
    """

    def __init__(self, console: Console, *, clock=time.monotonic) -> None:
        from rich.live import Live

        self.console, self.clock = console, clock
        self.total = self.done_frames = self.rendered = 0
        self.jobs_total = 0
        self.began: float | None = None  # when the first job started rendering
        self.running: dict[str, dict[str, Any]] = {}
        self.counts = {"done": 0, "skipped": 0, "failed": 0, "held": 0}
        self.held: set[str] = set()  # ids of the jobs another process renders, counted once each
        self.live = Live(console=console, get_renderable=self.renderable, refresh_per_second=4, transient=True,
                         redirect_stdout=False, redirect_stderr=False)  # fmt: skip

    def __enter__(self) -> ProgressView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def print(self, text: str) -> None:
        self.live.console.print(text, highlight=False, soft_wrap=True)

    # -- what the region shows --

    def _rate(self, frames: int, since: float | None) -> float | None:
        seconds = self.clock() - since if since is not None else 0.0
        return frames / seconds if frames and seconds > 0 else None

    def renderable(self) -> Group:
        from rich.console import Group
        from rich.markup import escape
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        rate = self._rate(self.rendered, self.began)
        left = self.total - self.done_frames
        speed = f"{rate:.1f} frames/s" if rate else "measuring"
        eta = f"ETA {_duration(left / rate)}" if rate else "ETA -"
        top = Table.grid(padding=(0, 1))
        top.add_row(Text(f"{self.jobs_total} jobs", style="bold"), ProgressBar(total=max(self.total, 1),
                    completed=self.done_frames, width=30), Text(f"{self.done_frames}/{self.total} frames"),
                    Text(speed, style="progress.data.speed"), Text(eta, style="progress.remaining"))  # fmt: skip
        rows: list[Any] = [top]
        room = max(1, (self.console.height or 24) - 3)  # the run's bar, the counts, a spare row
        jobs = list(self.running.values())
        shown = jobs if len(jobs) <= room else jobs[: room - 1]
        grid = Table.grid(padding=(0, 1))
        for job in shown:
            job_rate = self._rate(job["frames_done"] - job["frames_reused"], job["began"])
            where = f" [dim]{escape(job['device'])}[/]" if job.get("device") else ""
            grid.add_row(Text.from_markup(f"  {escape(job['job'])}{where}", overflow="ellipsis"),
                         ProgressBar(total=job["frames"], completed=job["frames_done"], width=20),
                         Text(f"{job['frames_done']}/{job['frames']}"),
                         Text(f"{job_rate:.1f} frames/s" if job_rate else "starting", style="progress.data.speed"))  # fmt: skip
        rows.append(grid)
        if len(shown) < len(jobs):
            rows.append(Text(f"  ... and {len(jobs) - len(shown)} more running", style="dim"))
        pending = self.jobs_total - sum(self.counts.values()) - len(jobs)
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
        rows.append(Text(f"  {len(jobs)} running, {pending} waiting" + (f", {counts}" if counts else ""),
                         style="dim"))  # fmt: skip
        return Group(*rows)

    # -- events --

    def __call__(self, event: RenderEvent) -> None:
        from rich.markup import escape

        kind = event.kind
        if kind == "run_started":
            self.total, self.jobs_total = event["frames"], event["jobs"]
        elif kind == "job_started":
            if event.job_id in self.held:  # its holder let go: it runs here now
                self.held.discard(event.job_id)
                self.counts["held"] -= 1
            if self.began is None:
                self.began = self.clock()
            self.running[event.job_id] = {
                "job": event.job, "device": event.device, "frames": event["frames"],
                "frames_done": event["frames_reused"], "frames_reused": event["frames_reused"], "began": self.clock(),
            }  # fmt: skip
            self.done_frames += event["frames_reused"]
            note = resume_note(event)
            if note:
                self.print(f"  {escape(note)}")
        elif kind == "chunk_done":
            job = self.running.get(event.job_id)
            if job is not None:
                step = event["frames_done"] - job["frames_done"]
                job["frames_done"] = event["frames_done"]
                self.done_frames += step
                self.rendered += step
        elif kind == "job_done":
            self.running.pop(event.job_id, None)
            self.counts["done"] += 1
            self.print(f"  [green]done[/]     {escape(event.job)} -> {escape(event['output'])} "
                       f"({event['seconds']:.1f} s)")  # fmt: skip
        elif kind == "job_skipped":
            self.done_frames += event["frames"]
            self.counts["skipped"] += 1
            self.print(
                f"  [cyan]skipped[/]  {escape(event.job)}: already done ({escape(event['output'])})"
            )
        elif kind == "job_failed":
            job = self.running.pop(event.job_id, None)
            self.counts["failed"] += 1
            if job is not None:
                self.total -= job["frames"] - job["frames_done"]  # its frames left will not come
            self.print(f"  [red]failed[/]   {escape(event['error'])}")
        elif kind == "job_retrying":
            self.print(f"  [yellow]retrying[/] {escape(event.job)}: the worker on {escape(str(event.device))} "
                       f"died ({escape(event['cause'])}); resuming from its last chunk")  # fmt: skip
        elif kind == "job_held":
            self.running.pop(event.job_id, None)
            if event.job_id not in self.held:  # the pool tries a held job again every few seconds
                self.held.add(event.job_id)
                self.counts["held"] += 1
                self.print(f"  [yellow]waiting[/]  {escape(event.job)}: {escape(event['holder'])} renders it")
        elif kind == "state_repaired":
            self.print(f"  [yellow]repaired[/] {escape(event.job)}: {escape(event['message'])}")
        elif kind in ("run_report_failed", "report_failed"):
            self.print(f"  [yellow]warning[/]  report not written: {escape(event['error'])}")
        self.live.refresh()


HEARTBEAT_S = 30.0


def resume_note(event: RenderEvent) -> str | None:
    """`resuming anna/fr: 3/5 chunks reused` for a job_started event that reuses chunks."""
    if not event.get("chunks_reused"):
        return None
    return f"resuming {event.job}: {event['chunks_reused']}/{event['chunks']} chunks reused"


class PlainLog:
    """One whole line per event, for logs that are not a terminal (CI, `| tee`): never wrapped,
    paths whole. Each running job also gets a heartbeat line every `heartbeat_s` seconds (frames
    done, frames per second rendered in this run), so a long job never looks stuck.

    `quiet` keeps only failures; `verbose` adds a line per chunk.
    """

    def __init__(self, console: Console, *, heartbeat_s: float = HEARTBEAT_S, quiet: bool = False,
                 verbose: bool = False, clock=time.monotonic) -> None:  # fmt: skip
        self.console, self.heartbeat_s, self.quiet, self.verbose = console, heartbeat_s, quiet, verbose
        self.clock = clock
        self.running: dict[str, dict[str, Any]] = {}
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlainLog:
        if self.heartbeat_s > 0 and not self.quiet:
            self._thread = threading.Thread(target=self._beat, name="emo-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.heartbeat()

    def line(self, text: str) -> None:
        with self._lock:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def heartbeat(self) -> None:
        """One line per running job: frames done of all, and this run's rendering rate."""
        now = self.clock()
        with self._lock:
            jobs = list(self.running.values())
        for job in jobs:
            rendered, seconds = job["frames_done"] - job["frames_reused"], now - job["began"]
            rate = f", {rendered / seconds:.1f} frames/s" if rendered and seconds > 0 else ""
            where = f" on {job['device']}" if job.get("device") else ""
            self.line(f"running  {job['job']}{where}: {job['frames_done']}/{job['frames']} frames{rate}")

    def __call__(self, event: RenderEvent) -> None:
        kind = event.kind
        if kind == "job_started":
            with self._lock:
                self.running[event.job_id] = {
                    "job": event.job, "device": event.device, "frames": event["frames"],
                    "frames_done": event["frames_reused"], "frames_reused": event["frames_reused"],
                    "began": self.clock(),
                }  # fmt: skip
            note = resume_note(event)
            if not self.quiet:
                self.line(
                    note or f"started  {event.job}: {event['frames']} frames in {event['chunks']} chunks"
                )
        elif kind == "chunk_done":
            with self._lock:
                if event.job_id in self.running:
                    self.running[event.job_id]["frames_done"] = event["frames_done"]
            if self.verbose:
                self.line(f"chunk    {event.job}: {event['chunk'] + 1}/{event['chunks']}, "
                          f"{event['frames_done']}/{event['frames']} frames")  # fmt: skip
        elif kind in ("job_done", "job_failed", "job_skipped", "job_held", "job_interrupted"):
            with self._lock:
                self.running.pop(event.job_id or "", None)
        if kind == "job_failed":
            self.line(f"failed   {event['error']}")
        elif self.quiet:
            return
        elif kind == "job_done":
            self.line(f"done     {event.job} -> {event['output']} ({event['seconds']:.1f} s)")
        elif kind == "job_skipped":
            self.line(f"skipped  {event.job}: already done ({event['output']})")
        elif kind == "job_retrying":
            self.line(f"retrying {event.job}: the worker on {event.device} died ({event['cause']})")
        elif kind == "job_held" and event.job_id not in self.held:  # said once, not at every retry
            self.held.add(event.job_id)
            self.line(f"waiting  {event.job}: {event['holder']} renders it (its lease is held)")
        elif kind == "state_repaired":
            self.line(f"repaired {event.job}: {event['message']}")
        elif kind in ("run_report_failed", "report_failed"):
            self.line(f"warning  report not written: {event['error']}")


def stamped(event: RenderEvent) -> dict[str, Any]:
    """The event with its schema version and time (see `execution.results.stamped`)."""
    from emo_cli.execution.results import stamped as stamp

    return stamp(event)


def json_lines(event: RenderEvent) -> None:
    sys.stdout.write(json.dumps(stamped(event)) + "\n")
    sys.stdout.flush()


class LogFile:
    """Every event as a JSON line (as `--json` prints them) appended to a file, beside the display."""

    def __init__(self, path: Path, display) -> None:
        self.path, self.display = path, display
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = path.open("a", encoding="utf-8")

    def __call__(self, event: RenderEvent) -> None:
        self.stream.write(json.dumps(stamped(event)) + "\n")
        self.stream.flush()
        self.display(event)

    def close(self) -> None:
        self.stream.close()


def summary_table(summary: Any) -> Table:
    from rich.markup import escape
    from rich.table import Table

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
    # Only outputs published in this run: a rerun that skips finished jobs does not repeat the note.
    signers = {r.credentials for r in summary.results if r.status == "done" and r.credentials}
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
            envvar="EMO_DEVICES",
            help="Local workers: auto (every visible GPU, plus one CPU worker for CPU-backend jobs; else CPU "
            "workers), cuda, cuda:0,1,3, cpu or cpu:N.",
        ),
    ] = "auto",
    retries: Annotated[
        int,
        typer.Option(
            "--retries", min=0, envvar="EMO_RETRIES", help="Retries of a job whose worker process died."
        ),
    ] = 2,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="Render only shard INDEX/COUNT of the jobs (by job id), e.g. 0/4."),
    ] = None,
    confine: Annotated[
        Path | None,
        typer.Option("--confine", help="Render a manifest from others: inputs must be inside its folder, it and "
                     "output_dir inside DIR, no signing: section (as EMO_CONFINE=DIR; see the README's trust model)."),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            envvar="EMO_EXECUTOR",
            help="local (worker processes on this machine), ray, or inline (this process, one job at a time).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar="EMO_RAY_ADDRESS",
            help="With --executor ray: the cluster to join (default: local).",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only failures and the final counts (no progress).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print a line per finished chunk (plain output).")
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar="EMO_LOG_FILE",
            dir_okay=False,
            help="Append every event as a JSON line (as --json prints them) to this file.",
        ),
    ] = None,  # fmt: skip
    heartbeat: Annotated[
        float,
        typer.Option(
            "--heartbeat",
            min=0,
            envvar="EMO_HEARTBEAT",
            help="Plain (non-terminal) output: a progress line per running job every this many "
            "seconds; 0: none.",
        ),
    ] = HEARTBEAT_S,  # fmt: skip
    overwrite: Annotated[
        bool | None,
        typer.Option(
            "--overwrite/--no-overwrite",
            help="Replace outputs that another job made, or refuse to (a job whose output path holds another "
            "job's video is refused, naming both). Default: the manifest's policy.overwrite, else refuse.",
            show_default=False,
        ),
    ] = None,
    report: Annotated[
        bool,
        typer.Option("--report/--no-report", help="Write the QC report (report.html, report.json) into the "
                     "output_dir at the end (it measures every finished output again)."),
    ] = True,
) -> None:
    """Render a manifest's jobs; an interrupted render resumes where it stopped."""
    from rich.console import Console
    from rich.markup import escape

    from emo_cli.execution.interrupts import exit_code as interrupt_exit_code
    from emo_cli.execution.interrupts import stop_on_sigterm

    stop_on_sigterm()  # from here on SIGTERM stops the render like Ctrl-C (exit 143, Ctrl-C 130)
    if confine is not None:
        os.environ["EMO_CONFINE"] = str(confine)  # read by load_manifest (and inherited by workers)
    from emo_cli.api import render_manifest
    from emo_cli.execution.executors import make_executor
    from emo_cli.execution.results import RenderEvent

    console = Console()
    where = make_executor(executor, devices=devices, retries=retries, address=address)
    options = dict(resume=resume, only=only, shard=shard, executor=where, overwrite=overwrite, report=report)
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other", param_hint="--quiet")
    with contextlib.ExitStack() as stack:
        if as_json:
            display: Any = json_lines
        elif console.is_terminal and not quiet:
            display = stack.enter_context(ProgressView(console))
        else:
            display = stack.enter_context(
                PlainLog(console, heartbeat_s=heartbeat, quiet=quiet, verbose=verbose)
            )
        if log_file is not None:
            display = LogFile(log_file, display)
            stack.callback(display.close)
        try:
            summary = render_manifest(manifest, events=display, **options)
        except KeyboardInterrupt:
            if as_json:
                json_lines(RenderEvent.of("interrupted"))
            Console(stderr=True).print(
                f"interrupted: finished chunks are kept; run `emo render {escape(str(manifest))}` again to resume.",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(interrupt_exit_code()) from None
    if as_json:
        raise typer.Exit(summary.exit_code)
    if quiet:
        counts = summary.to_dict()
        console.print(", ".join(f"{counts[k]} {k}" for k in ("done", "skipped", "failed", "held") if counts[k])
                      or "no jobs", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    else:
        table = summary_table(summary)
        if not console.is_terminal:  # a log: rows whole, never wrapped
            console.width = max(
                console.width, console.measure(table, options=console.options.update_width(100_000)).maximum
            )
        console.print(table)
        note = credentials_note(summary)
        if note:
            console.print(note, markup=False, highlight=False, soft_wrap=True)
        if summary.report is not None:
            console.print(f"QC report: {escape(str(summary.report))}", highlight=False, soft_wrap=True)
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} job(s) failed[/]; the others are done. "
                      "Fix the inputs named above and run the same command again.", highlight=False,
                      soft_wrap=True)  # fmt: skip
    raise typer.Exit(summary.exit_code)
