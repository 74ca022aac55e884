"""Quality gates: measure a rendered video (lip-sync, silence, drift, sharpness, jitter, blinks,
duration, provenance) and pass or fail it; build the HTML report of a manifest's outputs.

    measure_video(video, *, audio=None, portrait=None, thresholds=None) -> QcReport
    measure_chunk(frames, *, index, start, loudness, reference, sample=3) -> ChunkSample
                                           the per-chunk measures on a bounded sample, for a render loop
    reference_for(first_frame, geometry, portrait=None) -> Reference
    build_report(manifest) -> Report       report.html + report.json of a manifest's outputs
    Thresholds(...)                        the pass marks, with their defaults

Sits below execution and above provenance: it imports provenance, planning, manifest, backends
and media, never execution or cli.
"""

from emo_cli.quality.chunk import ChunkFigures, ChunkSample, measure_chunk, reference_for
from emo_cli.quality.qc import Gate, QcReport, measure_video
from emo_cli.quality.report import Report, build_report
from emo_cli.quality.thresholds import Thresholds

__all__ = ["ChunkFigures", "ChunkSample", "Gate", "QcReport", "Report", "Thresholds", "build_report",
           "measure_chunk", "measure_video", "reference_for"]
