"""Quality gates: measure a rendered video (lip-sync, silence, drift, sharpness, jitter, blinks,
duration, provenance) and pass or fail it; build the HTML report of a manifest's outputs.

    measure_video(video, *, audio=None, portrait=None, thresholds=None) -> QcReport
    Thresholds(...)                        the pass marks, with their defaults

Sits below execution and above provenance: it imports provenance, planning, manifest, backends
and media, never execution or cli.
"""

from emo_cli.quality.qc import ChunkFigures, Gate, QcReport, measure_video
from emo_cli.quality.thresholds import Thresholds

__all__ = ["ChunkFigures", "Gate", "QcReport", "Thresholds", "measure_video"]
