"""The run report: `<output_dir>/run-report.json`, written atomically at the end of every render.

One document a pipeline can read instead of parsing the log: when the run started and ended,
where it ran, the counts, and per job its id, name, status, output (relative to output_dir) and
the output's sha256 as published, its timings, its error if any, and a provenance summary read
from the output's sidecar (tool version, creation time, watermark, C2PA signer). A sharded run
writes `run-report.<i>-of-<n>.json`, so the shards of one array job do not overwrite each other.
(`emo report` writes report.html / report.json with quality measures: a different document.)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emo_cli.execution.results import JobResult, RunSummary
from emo_cli.execution.workdir import Journal
from emo_cli.fsutil import atomic_write_text
from emo_cli.planning.job import Job, Plan
from emo_cli.provenance.tags import sidecar_path

RUN_REPORT_FORMAT = 1
# What the sidecar says about provenance, as the report summarises it.
_PROVENANCE_KEYS = ("emo_tool_version", "emo_created", "emo_watermark", "emo_c2pa", "emo_consent")


def run_report_path(output_dir: Path, shard: str | None = None) -> Path:
    if shard is None:
        return output_dir / "run-report.json"
    index, count = shard.split("/")
    return output_dir / f"run-report.{index}-of-{count}.json"


def iso_utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _provenance(output: Path, digest: str | None) -> dict[str, Any] | None:
    try:
        doc = json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or (digest is not None and doc.get("output_sha256") != digest):
        return None
    return {key.removeprefix("emo_"): doc[key] for key in _PROVENANCE_KEYS if key in doc}


def _job_entry(result: JobResult, job: Job | None, output_dir: Path) -> dict[str, Any]:
    entry = result.to_dict()
    try:
        entry["output"] = Path(result.output).relative_to(output_dir).as_posix()
    except ValueError:
        pass
    digest = None
    if job is not None and result.status in ("done", "skipped"):
        journal = Journal.load(job.work_dir)
        digest = journal.output_sha256 if journal is not None and journal.job_id == job.id else None
    entry["output_sha256"] = digest
    entry["provenance"] = _provenance(Path(result.output), digest) if digest else None
    return entry


def write_run_report(plan: Plan, summary: RunSummary, *, started: datetime, finished: datetime,
                     executor: str, shard: str | None = None) -> Path:  # fmt: skip
    """Write the run report of `summary` into the plan's output_dir; returns its path."""
    jobs = {job.id: job for job in plan.jobs}
    counts = summary.to_dict()
    doc = {
        "format": RUN_REPORT_FORMAT,
        "manifest": str(plan.manifest),
        "output_dir": str(plan.output_dir),
        "started": iso_utc(started),
        "finished": iso_utc(finished),
        "seconds": round(summary.seconds, 3),
        "executor": executor,
        "shard": shard,
        "counts": {key: counts[key] for key in ("done", "skipped", "failed", "held")},
        "exit_code": summary.exit_code,
        "jobs": [_job_entry(r, jobs.get(r.job_id), plan.output_dir) for r in summary.results],
    }
    path = run_report_path(plan.output_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path
