"""build_report: one self-contained HTML page (and report.json) about a manifest's outputs.

Per job: a contact sheet, mouth aperture against loudness over time, the QC table, provenance
and timings, read from what is on disk (the plan, each job's progress from its journal, the
outputs themselves), so it can be made at any time after a render, or on another machine.
Images are embedded as PNG data URIs and the styles are inline: the page is one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from emo_cli.errors import EmoError
from emo_cli.fsutil import atomic_write_text
from emo_cli.quality.qc import QcReport, measure_video
from emo_cli.quality.thresholds import Thresholds

if TYPE_CHECKING:
    from emo_cli.planning.job import Plan


class JobState(Protocol):
    """How far a job has rendered (execution's status rows have these fields)."""

    state: str
    chunks_done: int
    chunks: int

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
REPORT_FORMAT = 1
CONTACT_FRAMES = 12


@dataclass(frozen=True)
class JobReport:
    name: str
    id: str
    output: Path
    state: str  # pending, partial or done (from the journal)
    chunks_done: int
    chunks: int
    qc: QcReport | None  # None when there is no output to measure
    render_span_s: float | None  # first file written in the job's work dir -> output written
    output_written: str | None  # UTC time the output was last written

    output_dir: Path  # the plan's: the page shows paths relative to it
    portrait: Path
    error: str | None = None  # why the output could not be measured

    @property
    def passed(self) -> bool:
        return self.qc is not None and self.qc.passed

    @property
    def shown_output(self) -> str:
        try:
            return str(self.output.relative_to(self.output_dir))
        except ValueError:
            return str(self.output)

    @property
    def shown_reference(self) -> str:
        return f"portrait {self.portrait.name}" if self.qc is not None and self.qc.reference != "first frame" else "first frame"

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.name, "id": self.id, "output": str(self.output), "state": self.state,
            "chunks_done": self.chunks_done, "chunks": self.chunks, "passed": self.passed,
            "qc": None if self.qc is None else {**self.qc.to_dict(), "series": self.qc.series,
                                                "contact_sheet_frames": [i for i, _ in self.qc.thumbnails]},
            "error": self.error,
            "timings": {"render_span_s": self.render_span_s, "output_written": self.output_written,
                        "qc_s": None if self.qc is None else round(self.qc.seconds, 3)},
        }  # fmt: skip


@dataclass(frozen=True)
class Report:
    manifest: Path
    html: Path
    json: Path
    jobs: tuple[JobReport, ...]

    @property
    def passed(self) -> bool:
        return all(job.passed for job in self.jobs)

    @property
    def exit_code(self) -> int:
        """0 when every job is rendered and passes every gate, else 1."""
        return 0 if self.passed else 1


def build_report(manifest: Path | str, plan: Plan, states: Sequence[JobState], *,
                 output_dir: Path | str | None = None, thresholds: Thresholds | None = None) -> Report:  # fmt: skip
    """Measure every finished job of `plan` (made from `manifest`; `states` in plan order, how
    far each job has rendered) and write report.html and report.json into `output_dir`
    (default: the manifest's output_dir). `emo_cli.api.report_manifest` gathers the states.
    Without `thresholds`, each job is judged by its own (`settings.qc`, as the render judged it).
    """
    folder = Path(output_dir) if output_dir is not None else plan.output_dir
    jobs = []
    for job, status in zip(plan.jobs, states, strict=True):
        qc, error = None, None
        if job.output.is_file():
            try:
                qc = measure_video(job.output, audio=job.audio.path, portrait=job.portrait.path,
                                   thresholds=thresholds or Thresholds.from_settings(job.settings.qc),
                                   chunk_frames=job.settings.chunk_frames,
                                   thumbnails=CONTACT_FRAMES)  # fmt: skip
            except EmoError as exc:  # one unreadable output must not hide the other jobs
                error = str(exc)
        span, written = _timings(job.work_dir, job.output)
        jobs.append(JobReport(job.name, job.id, job.output, status.state, status.chunks_done, status.chunks, qc,
                              span, written, plan.output_dir, job.portrait.path, error))  # fmt: skip
    report = Report(Path(manifest), folder / REPORT_HTML, folder / REPORT_JSON, tuple(jobs))
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    doc = {"format": REPORT_FORMAT, "manifest": str(manifest), "created": created, "passed": report.passed,
           "thresholds": (thresholds or Thresholds()).to_dict(), "jobs": [j.to_dict() for j in jobs]}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report.json, json.dumps(doc, indent=1) + "\n")
    atomic_write_text(report.html, render_html(report, created))
    return report


def _timings(work_dir: Path, output: Path) -> tuple[float | None, str | None]:
    """(seconds from the first file written in the work dir to the output, the output's time).

    The journal keeps no clock, so the span comes from file times: it covers every run that
    wrote into the work dir (a resumed job's span includes the pause).
    """
    if not output.is_file():
        return None, None
    written = output.stat().st_mtime
    first = min((p.stat().st_mtime for p in work_dir.rglob("*") if p.is_file()), default=None)
    stamp = datetime.fromtimestamp(written, timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return (round(written - first, 2) if first is not None else None), stamp


# --- HTML -----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}.sub{color:#5b6472;font-size:13px}
.job{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 18px;margin:18px 0}
.head{display:flex;align-items:center;gap:12px;margin-bottom:10px}
.badge{font-weight:700;font-size:12px;padding:3px 9px;border-radius:10px;color:#fff}
.pass{background:#1f8a4c}.fail{background:#c62828}.na{background:#8a93a0}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
img{max-width:100%;border:1px solid #e3e6ea;border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef1;vertical-align:top}
th{color:#5b6472;font-weight:600}td.r-pass{color:#1f8a4c;font-weight:700}td.r-fail{color:#c62828;font-weight:700}td.r-na{color:#8a93a0}
.detail{color:#c62828;font-size:12px}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px;margin:8px 0}
dt{color:#5b6472}dd{margin:0;word-break:break-all}
"""


def render_html(report: Report, created: str) -> str:
    """The page, as one string (styles inline, images as data URIs)."""
    passed = sum(1 for j in report.jobs if j.passed)
    body = [f"<h1>emo-cli quality report</h1><div class='sub'>{_e(report.manifest.name)} &middot; {created} &middot; "
            f"{passed} of {len(report.jobs)} job{'s' if len(report.jobs) != 1 else ''} pass every gate</div>"]  # fmt: skip
    for job in report.jobs:
        body.append(_job_html(job))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>emo-cli quality report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")  # fmt: skip


def _job_html(job: JobReport) -> str:
    qc = job.qc
    badge = "pass" if job.passed else ("na" if qc is None and job.error is None else "fail")
    label = {"pass": "PASS", "fail": "FAIL", "na": job.state.upper()}[badge]
    head = (f"<div class='head'><span class='badge {badge}'>{label}</span><h2>{_e(job.name)}</h2>"
            f"<span class='sub'>job {_e(job.id)} &middot; {_e(job.output.name)}</span></div>")  # fmt: skip
    facts = [("state", f"{job.state} ({job.chunks_done}/{job.chunks} chunks)"), ("output", job.shown_output)]
    if job.output_written:
        facts.append(("output written", job.output_written))
    if job.render_span_s is not None:
        facts.append(("render span", f"{job.render_span_s:g} s (first work file to output, from file times)"))
    if job.error is not None:
        return f"<section class='job'>{head}{_dl(facts)}<p class='detail'>Cannot measure the output: {_e(job.error)}</p></section>"
    if qc is None:
        return f"<section class='job'>{head}{_dl(facts)}<p class='sub'>No output to measure yet.</p></section>"
    facts += [("video", f"{qc.frames} frames at {qc.fps:g} fps, {qc.width}x{qc.height}"),
              ("reference", job.shown_reference), ("measured in", f"{qc.seconds:.1f} s")]  # fmt: skip
    rows = "".join(
        f"<tr><td>{_e(g.name)}</td><td class='r-{'pass' if g.passed else 'na' if g.passed is None else 'fail'}'>"
        f"{'pass' if g.passed else 'n/a' if g.passed is None else 'FAIL'}</td><td>{_e(g.value)}"
        + (f"<div class='detail'>{_e(g.detail)}</div>" if g.detail and g.passed is not True else "")
        + f"</td><td>{_e(g.limit)}</td></tr>"
        for g in qc.gates
    )
    table = f"<table><tr><th>gate</th><th>result</th><th>measured</th><th>pass mark</th></tr>{rows}</table>"
    chunks = "".join(
        f"<tr><td>{c.index}</td><td>{c.start}-{c.start + c.count - 1}</td><td>{_f(c.ssim)}</td>"
        f"<td>{_f(c.delta_e_face)}</td><td>{_f(c.delta_e_background)}</td><td>{_f(c.sharpness)}</td></tr>"
        for c in qc.chunks
    )
    chunk_table = ("<table><tr><th>chunk</th><th>frames</th><th>SSIM</th><th>dE face</th><th>dE background</th>"
                   f"<th>sharpness</th></tr>{chunks}</table>")  # fmt: skip
    sheet = "data:image/jpeg;base64," + base64.b64encode(contact_sheet(qc)).decode("ascii")
    plot = _png(sync_plot(qc))
    return (f"<section class='job'>{head}<div class='grid'><div>{table}{_dl(facts)}</div><div>"
            f"<img alt='contact sheet of {_e(job.name)}' src='{sheet}'>"
            f"<img alt='mouth aperture and loudness of {_e(job.name)}' src='{plot}'></div></div>"
            f"<h3 class='sub'>Per chunk</h3>{chunk_table}</section>")  # fmt: skip


def _dl(facts: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def contact_sheet(qc: QcReport, columns: int = 4) -> bytes:
    """The report's thumbnails in a grid, each labelled with its frame and time, as JPEG (a
    photographic sheet is a tenth of its PNG size)."""
    from PIL import Image, ImageDraw

    thumbs = qc.thumbnails
    if not thumbs:
        thumbs = [(0, np.full((90, 160, 3), 255, np.uint8))]
    h, w = thumbs[0][1].shape[:2]
    label = 16
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, (index, thumb) in enumerate(thumbs):
        x, y = (n % columns) * w, (n // columns) * (h + label)
        sheet.paste(Image.fromarray(np.ascontiguousarray(thumb)), (x, y))
        draw.text((x + 4, y + h + 2), f"frame {index}  {index / qc.fps:.1f} s", fill=(40, 40, 40))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=85)
    return out.getvalue()


def sync_plot(qc: QcReport) -> bytes:
    """Mouth aperture (face heights) and loudness (0..1) over time, speech shaded, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t = np.arange(qc.frames) / qc.fps
    speech = qc.series.get("speech") or []
    if speech:
        ax.fill_between(t[: len(speech)], 0, 1, where=np.asarray(speech, bool), color="#e8eef8", step="mid",
                        label="speech (VAD)", transform=ax.get_xaxis_transform())  # fmt: skip
    loud = qc.series.get("loudness") or []
    if loud:
        ax.plot(t[: len(loud)], loud, color="#8a93a0", linewidth=0.9, label="loudness (0-1)")
    ax.set_ylabel("loudness")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("seconds")
    ax2 = ax.twinx()
    ax2.plot(t, qc.series["mouth"], color="#c2185b", linewidth=1.2, label="mouth aperture")
    ax2.set_ylabel("mouth (face heights)", color="#c2185b")
    # A fixed span of at least 0.06 face heights, so a still mouth draws a flat line rather than
    # its tracking noise blown up to full height.
    mouth = np.asarray(qc.series["mouth"])
    low = float(mouth.min()) - 0.005 if mouth.size else 0.0
    ax2.set_ylim(low, max(low + 0.06, float(mouth.max()) + 0.005 if mouth.size else 0.06))
    sync = qc.figures.get("lip_sync") or {}
    if sync:
        ax.set_title(f"lip-sync r = {sync['correlation']:.2f} at lag {sync['lag_frames']:+d} frames", fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, fontsize=7, frameon=False)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


