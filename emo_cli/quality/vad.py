"""Speech or silence per video frame, from the Silero VAD model bundled in the `silero-vad` package.

The package's own loader imports torch; the CPU path stays torch-free, so the ONNX file it ships
is located without importing the package (`importlib.util.find_spec`) and run here with
onnxruntime, the way the package's `OnnxWrapper` feeds it: 512-sample windows at 16 kHz, each
with the 64 samples before it as context, and the recurrent state carried from window to window.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from emo_cli.errors import EmoError

SAMPLE_RATE = 16000
WINDOW = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees first
MODEL_FILE = "silero_vad.onnx"

_lock = threading.Lock()
_session = None


class VadUnavailable(EmoError):
    """The bundled voice-activity model cannot be found or loaded."""


def model_path() -> Path:
    """The ONNX model inside the installed `silero-vad` package (found without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailable(
            "the silero-vad package is not installed; install it with `pip install --no-deps silero-vad`"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / MODEL_FILE
        if path.is_file():
            return path
    raise VadUnavailable(f"the silero-vad package has no data/{MODEL_FILE}; reinstall silero-vad")


def _load():
    global _session
    with _lock:
        if _session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # windows run one after another: threads only cost
            options.inter_op_num_threads = 1
            try:
                _session = onnxruntime.InferenceSession(
                    str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own unrelated types
                raise VadUnavailable(f"cannot load {model_path()} with onnxruntime: {exc}") from exc
        return _session


def speech_probability(audio: np.ndarray) -> np.ndarray:
    """Probability of speech for each 32 ms window of mono 16 kHz `audio` (the last one zero-padded)."""
    session = _load()
    windows = max(1, -(-len(audio) // WINDOW))
    padded = np.zeros(windows * WINDOW + CONTEXT, dtype=np.float32)
    padded[CONTEXT : CONTEXT + len(audio)] = audio
    state = np.zeros((2, 1, 128), dtype=np.float32)
    rate = np.array(SAMPLE_RATE, dtype=np.int64)
    out = np.empty(windows, dtype=np.float32)
    for i in range(windows):
        x = padded[None, i * WINDOW : i * WINDOW + WINDOW + CONTEXT]
        prob, state = session.run(None, {"input": x, "state": state, "sr": rate})
        out[i] = prob[0, 0]
    return out


def frame_speech(audio: np.ndarray, fps: float, num_frames: int, threshold: float = 0.5) -> np.ndarray:
    """Whether each of `num_frames` video frames is speech: the VAD's windows resampled to frames.

    A frame is speech when any window overlapping it is over `threshold`.
    """
    prob = speech_probability(audio)
    starts = np.arange(num_frames) / fps * SAMPLE_RATE / WINDOW
    ends = (np.arange(num_frames) + 1) / fps * SAMPLE_RATE / WINDOW
    speech = np.zeros(num_frames, dtype=bool)
    for i, (a, b) in enumerate(zip(starts.astype(int), np.ceil(ends).astype(int), strict=True)):
        span = prob[a : max(a + 1, b)]
        speech[i] = bool(span.size) and float(span.max()) > threshold
    return speech
