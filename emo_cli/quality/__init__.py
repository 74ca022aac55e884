"""Quality gates: measure a rendered video (lip-sync, silence, drift, sharpness, jitter, blinks,
duration, provenance) and pass or fail it; build the HTML report of a manifest's outputs.

    measure_video(video, *, audio=None, portrait=None, thresholds=None) -> QcReport
    measure_chunk(frames, *, index, start, loudness, reference, sample=3) -> ChunkSample
                                           the per-chunk measures on a bounded sample, for a render loop
    reference_for(first_frame, geometry, portrait=None) -> Reference
    aligned_portrait(portrait) -> (frame, geometry) -> Reference
                                           each measured frame's own reference, for a loop that may
                                           resume at any chunk (the render loop's, execution/chunkqc.py)
    build_report(manifest) -> Report       report.html + report.json of a manifest's outputs
    Thresholds(...)                        the pass marks, with their defaults

Sits below execution and above provenance: it imports provenance, planning, manifest, backends
and media, never execution or cli. The names above load on first use, so the CLI can read the
thresholds' defaults without importing the measures.
"""

from __future__ import annotations

from emo_cli.lazy import lazy_attributes

_WHERE = {
    "ChunkFigures": "chunk", "ChunkSample": "chunk", "measure_chunk": "chunk", "reference_for": "chunk",
    "aligned_portrait": "chunk",
    "Gate": "qc", "QcReport": "qc", "measure_video": "qc", "Report": "report", "build_report": "report",
    "Thresholds": "thresholds",
}  # fmt: skip
__all__ = sorted(_WHERE)


__getattr__ = lazy_attributes(__name__, _WHERE)
