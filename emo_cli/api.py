"""The Python API: what the `emo` commands call, for scripts, notebooks and other tools.

    load_manifest(path) -> Manifest             parse and check; ManifestError lists every problem
    validate_manifest(path) -> [Problem]        the manifest's and planning's problems, [] if none
    plan_manifest(path) -> Plan                 jobs with effective settings and content ids
    render(plan, ...) -> RunSummary             render a plan's jobs (see `emo_cli.execution.render`)
    render_manifest(path, ...) -> RunSummary    plan_manifest, then render
    get_backend_class(name) -> type[Backend]    a backend by name, from the plugin registry

Each function loads what it needs when called, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emo_cli.backends.base import Backend
    from emo_cli.errors import Problem
    from emo_cli.execution.executors import Executor
    from emo_cli.execution.results import EventSink, RunSummary
    from emo_cli.manifest.model import Manifest
    from emo_cli.planning.job import Plan

__all__ = [
    "clean_manifests",
    "get_backend_class",
    "load_manifest",
    "plan_manifest",
    "render",
    "render_manifest",
    "report_manifest",
    "validate_manifest",
]


def load_manifest(path: Path | str) -> Manifest:
    """Parse and check the manifest at `path` (schema, names, files, backends, consent).

    Raises:
        ManifestError: every problem at once, each as `file:line:col path: message`.
    """
    from emo_cli.manifest.loader import load_manifest as load

    return load(path)


def validate_manifest(path: Path | str, *, deep: bool = False) -> list[Problem]:
    """Every problem that would stop `emo render` before it starts; [] if there is none.

    Runs the manifest checks and then planning (hashing inputs, job ids, backend option
    constraints, outputs that collide only once ids are known), without rendering or writing.
    With `deep`, also finds the face in every portrait a job uses (`manifest.faces`: no face,
    too small, several) once the manifest itself loads.
    """
    from emo_cli.errors import ManifestError

    try:
        plan_manifest(path)
        problems: list[Problem] = []
    except ManifestError as exc:
        problems = list(exc.problems)
    if deep:
        from emo_cli.manifest.faces import face_problems

        try:
            manifest = load_manifest(path)
        except ManifestError:
            return problems
        found = face_problems(manifest)
        problems = sorted(dict.fromkeys(problems + found), key=lambda p: (p.line or 0, p.col or 0, p.path))
    return problems


def plan_manifest(path: Path | str) -> Plan:
    """`load_manifest`, then every job with its effective settings, hashed inputs and id."""
    from emo_cli.planning.plan import plan_manifest as plan

    return plan(path)


def render(
    plan: Plan,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    shard: str | None = None,
    executor: str | Executor = "inline",
    overwrite: bool | None = None,
) -> RunSummary:
    """Render `plan`'s jobs (or those in `only`, or shard "i/n") on `executor`.

    `executor` is "inline" (this process, one job after another), "local" (a worker process
    per device), "ray", or an executor object with its options, e.g.
    `LocalPoolExecutor(devices="cuda:0,1", retries=2)` from `emo_cli.execution.executors`
    (installed executors register by name in the `emo_cli.executors` entry-point group).
    `events` receives each `RenderEvent` (`event.kind`, `event.job`, `event["frames"]`...), from
    the run and from every job's worker. Expected failures are per job (`RunSummary.failed`); see `emo_cli.execution.render`.
    A job whose output path holds another job's video raises RenderError before anything
    renders, unless `overwrite` (None: the manifest's `policy.overwrite`, false by default).
    """
    from emo_cli.execution.runner import render as run

    return run(plan, resume=resume, events=events, only=only, shard=shard, executor=executor,
               overwrite=overwrite)  # fmt: skip


def render_manifest(
    path: Path | str,
    *,
    resume: bool = True,
    events: EventSink | None = None,
    only: Sequence[str] | None = None,
    shard: str | None = None,
    executor: str | Executor = "inline",
    overwrite: bool | None = None,
    report: bool = False,
) -> RunSummary:
    """`plan_manifest(path)` (raising ManifestError with every problem), then `render` it.

    With `report`, the QC report (`report_manifest`: report.html and report.json) is written
    into the output_dir once the run is over, whatever its jobs' fate; the summary's `report`
    names the page. (The events end with `run_done` before it is written.)
    """
    from emo_cli.execution.checkpoints import pause_point

    pause_point("plan")
    summary = render(plan_manifest(path), resume=resume, events=events, only=only, shard=shard, executor=executor,
                     overwrite=overwrite)  # fmt: skip
    if not report:
        return summary
    import dataclasses

    from emo_cli.errors import StorageError, describe_os_error

    try:
        page = report_manifest(path).html
    except (OSError, StorageError) as exc:  # a full disk or read-only output_dir: the outputs stand
        if events is not None:
            error = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            from emo_cli.execution.results import RenderEvent

            events(RenderEvent.of("report_failed", error=error))
        return summary
    return dataclasses.replace(summary, report=page)


def report_manifest(path: Path | str, *, output_dir: Path | str | None = None, thresholds=None):
    """Measure every finished job of the manifest at `path` and write report.html and report.json
    (into `output_dir`, default the manifest's output_dir); returns the `quality.report.Report`.

    Raises:
        ManifestError: the manifest is invalid.
    """
    from emo_cli.execution.status import plan_status
    from emo_cli.quality.report import build_report

    plan = plan_manifest(path)
    return build_report(path, plan, plan_status(plan), output_dir=output_dir, thresholds=thresholds)


def clean_manifests(paths: Sequence[Path | str], *, dry_run: bool = False, keep_current: bool = False):
    """Remove the work dirs under the manifests' output dirs that none of their current jobs
    uses, and the chunk stores of their finished jobs unless `keep_current` (never an output,
    never a work dir whose lease is held); returns the `execution.cleanup.CleanReport`.

    Raises:
        ManifestError: a manifest is invalid (nothing is removed).
    """
    from emo_cli.execution.cleanup import clean_work_dirs

    plans = [plan_manifest(path) for path in paths]
    return clean_work_dirs(plans, dry_run=dry_run, keep_current=keep_current)


def get_backend_class(name: str) -> type[Backend]:
    """The backend class called `name` (built-in or installed plugin); BackendError if none."""
    from emo_cli.backends.registry import get_backend_class as lookup

    return lookup(name)
