"""The backend interface: load once per worker, prepare once per job, render chunk after chunk.

The render loop (``emo_cli.execution``) drives a backend like this::

    backend = BackendClass(device="cpu")          # once per worker: load weights here
    renderer = backend.start_job(job_input)       # once per job: analyse the portrait here
    state = renderer.initial_state()
    for start, count in chunks:
        out = renderer.render_chunk(start, count, state)
        ...encode out.frames, checkpoint out.state...
        state = out.state

After an interruption the loop calls ``start_job`` again and hands ``render_chunk`` the state
it checkpointed after the last good chunk. A backend must therefore make every chunk a pure
function of (job input, start, count, state): that is what makes a resumed render identical
to an uninterrupted one. Everything a chunk needs from the past (motion frames, RNG state,
smoothing filters) goes in the state, and the state must survive `encode_state` /
`decode_state` unchanged.

Class attributes (`name`, `version`, `options_schema`, `weights_identity`) are read by
``emo validate`` and ``emo plan``, which never import torch: a backend module imports its heavy
dependencies inside methods, not at module level.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # numpy loads with the first state encoded: `emo --help` and plugins' imports skip it
    import numpy as np

# A chunk-to-chunk state: numpy arrays, or JSON values (None, bool, int, float, str, lists and
# dicts of those). Nested dicts may hold arrays too. Never pickled.
State = dict[str, Any]


@dataclass(frozen=True)
class JobInput:
    """What a backend gets for one job. Audio is already decoded to the backend's rate."""

    job_id: str
    portrait_path: Path
    audio: np.ndarray  # mono float32 in [-1, 1] at `sample_rate`
    sample_rate: int
    fps: int
    num_frames: int  # ceil(duration * fps)
    seed: int
    resolution: int
    options: Mapping[str, Any]  # this backend's options, schema defaults filled in


@dataclass(frozen=True)
class OptionProblem:
    """A constraint between a backend's options (or with its weights) that a job breaks."""

    option: str  # the option the problem is reported at, e.g. "motion_frames"
    message: str  # a sentence naming the options and values, e.g. "settings.emo.motion_frames (6) ..."


@dataclass(frozen=True)
class ChunkOutput:
    frames: np.ndarray  # uint8 RGB, shape (count, height, width, 3)
    state: State


class JobRenderer(ABC):
    """One job in progress on one backend. Holds the per-job analysis, never the frames."""

    width: int  # even, for H.264 yuv420p
    height: int

    @abstractmethod
    def initial_state(self) -> State:
        """The state before frame 0."""

    @abstractmethod
    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        """Render frames [start, start + count) given the state after frame start - 1."""

    def reseed(self, seed: int) -> bool:
        """Render the following chunks with `seed` in place of the job's (a quality retry).

        Returns False when the renderer draws nothing at random, so another seed would give
        the same frames (the default); a stochastic backend overrides this and returns True.
        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release per-job resources."""


class Backend(ABC):
    """A renderer plugin, registered in the `emo_cli.backends` entry-point group."""

    name: ClassVar[str]
    version: ClassVar[str]
    sample_rate: ClassVar[int] = 16000
    # JSON Schema for this backend's options (an object with additionalProperties: false).
    # It is spliced into the manifest schema under settings.<name>.
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}, "additionalProperties": False}
    # Resources a worker needs: "cpu" backends run on CPU workers, "gpu" ones want a GPU each.
    resources: ClassVar[str] = "cpu"

    def __init__(self, device: str | None = None) -> None:
        self.device = device or "cpu"

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Options with the schema's defaults filled in (validation happens in the manifest)."""
        resolved = {
            key: spec["default"]
            for key, spec in cls.options_schema.get("properties", {}).items()
            if "default" in spec
        }
        resolved.update(options or {})
        return resolved

    @classmethod
    def resolve_paths(cls, options: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
        """`options` with every relative path (a property of `"format": "path"`) made absolute
        against `base_dir`, the manifest's folder: backend paths read like portrait paths."""
        resolved = dict(options)
        for key, spec in cls.options_schema.get("properties", {}).items():
            value = resolved.get(key)
            if spec.get("format") == "path" and isinstance(value, str) and value:
                resolved[key] = str((base_dir / Path(value).expanduser()).resolve())
        return resolved

    @classmethod
    def weights_identity(cls, options: Mapping[str, Any]) -> str:
        """A stable id of the weights these options select; part of every job id. No torch."""
        return "none"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[OptionProblem]:
        """What is wrong with these options (defaults filled, paths resolved) beyond what the
        schema says: constraints between options, or with the weights they select. Called at
        planning, so `emo validate` reports them before any model loads. No torch; read what is
        needed from files (a weights folder's JSON config). Weights that cannot be described at
        all are `weights_identity`'s to report."""
        return []

    @abstractmethod
    def start_job(self, job: JobInput) -> JobRenderer:
        """Analyse the job's inputs (once per job) and return its renderer.

        Raises `emo_cli.errors.InputError` for inputs the backend cannot use.
        """


def encode_state(state: State) -> bytes:
    """Serialise a state to bytes: arrays in an .npz, everything else as JSON. No pickle."""
    import numpy as np

    arrays: dict[str, np.ndarray] = {}

    def lift(value: Any, where: str) -> Any:
        if isinstance(value, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = value
            return {"__array__": key}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            return {str(k): lift(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [lift(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"state value at {where} has unsupported type {type(value).__name__}")

    doc = lift(state, "state")
    buf = io.BytesIO()
    np.savez(buf, __doc__=np.frombuffer(json.dumps(doc, sort_keys=True).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def decode_state(data: bytes) -> State:
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        doc = json.loads(npz["__doc__"].tobytes().decode())
        arrays = {key: npz[key] for key in npz.files if key != "__doc__"}

    def lower(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]]
            return {k: lower(v) for k, v in value.items()}
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    return lower(doc)
