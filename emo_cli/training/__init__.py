"""Training-side data: `emo dataset prepare` turns source videos into a training dataset.

Stack position: below the public API and the CLI, beside `execution`; it may import anything
below it (planning, backends, media, fsutil, errors) and never imports torch unless a caller
asks for model features.
"""

from emo_cli.training.data import TrainingData, Window
from emo_cli.training.index import load_index
from emo_cli.training.prepare import PrepareSettings, PrepareSummary, VideoResult, prepare_dataset

__all__ = ["PrepareSettings", "PrepareSummary", "TrainingData", "VideoResult", "Window", "load_index",
           "prepare_dataset"]  # fmt: skip
