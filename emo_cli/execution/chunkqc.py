"""The quality gates inside a job: each chunk judged as it is rendered, the video once published.

Settings come from the job (`settings.qc`, defaults filled by the manifest), so the gates run
wherever the job runs (this process, a local pool worker, a Ray actor) with nothing to pass
to the worker but the job itself.

A chunk is measured (`emo_cli.quality.measure_chunk`, a bounded sample of its frames) on the
frames the backend returned, before they are marked and encoded, and judged before the chunk
is committed; so its record goes into the journal with the chunk, in one atomic write, and a
chunk is never committed and then taken back. With `on_fail: retry` a failing chunk is
rendered again from the same state with the job's seed + 1, + 2, ... (stochastic backends:
`JobRenderer.reseed`); every attempt's figures and the seed kept are journaled. The measure is
a pure function of the chunk's frames, so a run killed anywhere and resumed renders, measures
and retries exactly as an uninterrupted one: the same seeds, the same bytes.

The whole-video gates (`measure_video`: lip-sync, mouth at rest, jitter, blinks, duration,
provenance) run on the published output. `retry` does not apply to them (no one chunk is at
fault and the output is already published): with retry they fail the job as `fail` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emo_cli.errors import EmoError, QualityError
from emo_cli.planning.job import Job
from emo_cli.quality.chunk import DEFAULT_SAMPLE, aligned_portrait, load_reference_image, measure_chunk
from emo_cli.quality.measures import frame_loudness
from emo_cli.quality.thresholds import Thresholds

ON_FAIL = ("warn", "fail", "retry")


def qc_enabled(job: Job) -> bool:
    """Whether the job runs its quality gates. A job built in code without `qc` settings does
    not; every job read from a manifest has them (on unless `settings.qc.enabled: false`)."""
    return bool(job.settings.qc) and bool(job.settings.qc.get("enabled", True))


def thresholds_for(job: Job) -> Thresholds:
    """The Thresholds' defaults with the job's `settings.qc` figures on top."""
    return Thresholds.from_settings(job.settings.qc)


@dataclass(frozen=True)
class ChunkCheck:
    """One attempt at a chunk: the seed it was rendered with, its figures and what failed."""

    seed: int
    figures: dict[str, Any]  # ChunkSample.to_dict()
    failed: tuple[str, ...]  # "measure value vs limit", one per failed gate

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "passed": self.passed, "failed": list(self.failed), "figures": self.figures}


@dataclass
class ChunkQc:
    """A chunk's quality record, as journaled: every attempt, the last one kept."""

    attempts: list[ChunkCheck] = field(default_factory=list)

    @property
    def kept(self) -> ChunkCheck:
        return self.attempts[-1]

    def to_dict(self) -> dict[str, Any]:
        kept = self.kept
        return {"passed": kept.passed, "seed": kept.seed, "failed": list(kept.failed), "figures": kept.figures,
                "retried": [a.to_dict() for a in self.attempts[:-1]]}  # fmt: skip


class ChunkGate:
    """Measures and judges a job's chunks; one per job, built where the job renders."""

    def __init__(self, job: Job, audio: np.ndarray, sample_rate: int) -> None:
        qc = job.settings.qc
        self.job, self.limits = job, thresholds_for(job)
        self.on_fail = str(qc.get("on_fail", "warn"))
        self.retries = int(qc.get("retries", 2)) if self.on_fail == "retry" else 0
        self.sample = int(qc.get("sample_frames", DEFAULT_SAMPLE))
        # Loudness over the whole track, so a chunk's figures do not depend on where a run began.
        self.loudness = frame_loudness(audio, sample_rate, job.settings.fps, job.num_frames)
        self.reference = aligned_portrait(load_reference_image(job.portrait.path),
                                          portrait_name=f"{job.portrait.field} ({job.portrait.path.name})")  # fmt: skip

    def check(self, index: int, start: int, frames: np.ndarray, seed: int) -> ChunkCheck:
        sample = measure_chunk(frames, index=index, start=start, loudness=self.loudness[start:start + len(frames)],
                               reference=self.reference, sample=self.sample)  # fmt: skip
        return ChunkCheck(seed, sample.to_dict(), tuple(self._failures(sample.figures)))

    def _failures(self, figures: Any) -> list[str]:
        limits = self.limits
        if figures.measured == 0:
            return ["face not found in any sampled frame"]
        out = []
        for name, value, limit, low in (
            ("ssim", figures.ssim, limits.min_ssim, True),
            ("delta_e_face", figures.delta_e_face, limits.max_delta_e_face, False),
            ("delta_e_background", figures.delta_e_background, limits.max_delta_e_background, False),
            ("sharpness", figures.sharpness, limits.min_sharpness, True),
        ):
            if value is not None and (value < limit if low else value > limit):
                out.append(f"{name} {value:g} {'<' if low else '>'} {limit:g}")
        return out

    def failure(self, record: ChunkQc, reseeded: bool) -> QualityError:
        """The error of a chunk that failed its gates (the caller names the chunk)."""
        seeds = ", ".join(str(a.seed) for a in record.attempts)
        why = f" in {len(record.attempts)} renders (seeds {seeds})" if len(record.attempts) > 1 else ""
        if not reseeded:
            why = (f" (on_fail: retry, but backend {self.job.settings.backend!r} renders the same frames "
                   "with any seed)")  # fmt: skip
        return QualityError(f"quality gate failed: {'; '.join(record.kept.failed)}{why}")


def video_gates(job: Job) -> dict[str, Any]:
    """The whole-video gates on the published output, as recorded (journal, sidecar, events).

    A measure that cannot be taken (an EmoError while reading the video) fails the gates as
    `qc` rather than the job, so `on_fail` decides what it costs.
    """
    from emo_cli.quality.qc import measure_video

    try:
        report = measure_video(job.output, audio=job.audio.path, portrait=job.portrait.path,
                               thresholds=thresholds_for(job), chunk_frames=job.settings.chunk_frames)  # fmt: skip
    except EmoError as exc:
        return {"passed": False, "verdict": f"FAIL: could not measure {job.output.name}: {exc}",
                "failed": [f"qc: {exc}"], "gates": []}  # fmt: skip
    return {"passed": report.passed, "verdict": report.verdict(),
            "failed": [f"{g.name}{'' if g.chunk is None else f' at chunk {g.chunk}'} ({g.detail or g.value})"
                       for g in report.failed],
            "gates": [g.to_dict() for g in report.gates]}  # fmt: skip


def job_quality(job: Job, chunks: dict[int, Any], video: dict[str, Any] | None) -> dict[str, Any]:
    """A job's quality summary from its journaled chunk records and whole-video gates: what the
    sidecar, the `job_done` event and the job's result say."""
    failed = [f"chunk {i}: {'; '.join(rec.qc['failed'])}" for i, rec in sorted(chunks.items())
              if rec.qc is not None and not rec.qc["passed"]]  # fmt: skip
    retried = {i: [a["seed"] for a in rec.qc["retried"]] + [rec.qc["seed"]] for i, rec in sorted(chunks.items())
               if rec.qc is not None and rec.qc["retried"]}  # fmt: skip
    if video is not None:
        failed += [f"video: {f}" for f in video["failed"]]
    return {
        "passed": not failed, "on_fail": str(job.settings.qc.get("on_fail", "warn")), "failed": failed,
        "chunks_measured": sum(1 for rec in chunks.values() if rec.qc is not None),
        "chunks_retried": {str(i): seeds for i, seeds in retried.items()}, "video": video,
    }  # fmt: skip


def verdict(quality: dict[str, Any]) -> str:
    """One line for a job's result: "pass", or what failed."""
    return "pass" if quality["passed"] else "fail: " + "; ".join(quality["failed"])


def enforce(job: Job, quality: dict[str, Any]) -> None:
    """Fail the job when its gates failed and `on_fail` is not warn.

    Raises:
        QualityError: naming each failed measure (and chunk, for per-chunk measures).
    """
    if not quality["passed"] and quality["on_fail"] != "warn":
        raise QualityError("quality gates failed: " + "; ".join(quality["failed"]))
