"""`testbars`, `portraitpatch` and `emoface`: cheap, deterministic backends for tests, installed through the
real entry point.

Putting this folder on sys.path (or PYTHONPATH) makes the `emo_test_backends-0.1.dist-info`
beside it visible to `importlib.metadata`, which registers `testbars` in the `emo_cli.backends`
group exactly like a third-party package would.

Each frame is a pattern of diagonal bars whose colours come from a running accumulator fed by
the seed, the frame index and the audio's loudness. The accumulator is the chunk-to-chunk
state, so resuming from a wrong state gives visibly different frames.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emo_cli.backends.base import Backend, ChunkOutput, JobInput, JobRenderer, State
from emo_cli.backends.emo import EmoBackend
from emo_cli.errors import InputError, RenderError


class TestBarsBackend(Backend):
    name: ClassVar[str] = "testbars"
    version: ClassVar[str] = "1.0"
    sample_rate: ClassVar[int] = 16000
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "fail_at_frame": {"type": ["integer", "null"], "default": None},
            "bug_at_frame": {"type": ["integer", "null"], "default": None},
            "reject_portrait": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
    }
    instances = 0  # how many times the class was instantiated in this process (load once)

    def __init__(self, device: str | None = None) -> None:
        super().__init__(device)
        type(self).instances += 1
        loads = os.environ.get("EMO_TEST_BACKEND_LOADS")  # a file: one line per load, across processes
        if loads:
            with open(loads, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()}\n")

    def start_job(self, job: JobInput) -> JobRenderer:
        if job.options.get("reject_portrait"):
            raise InputError(f"no face found in portrait {job.portrait_path}")
        try:
            digest = hashlib.sha256(job.portrait_path.read_bytes()).digest()
        except OSError as exc:
            raise InputError(f"portrait {job.portrait_path} cannot be read ({exc.strerror})") from exc
        return TestBarsRenderer(job, np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float64))


class TestBarsRenderer(JobRenderer):
    def __init__(self, job: JobInput, base: np.ndarray) -> None:
        self.job = job
        self.base = base
        self.width = self.height = job.resolution - job.resolution % 2
        ys, xs = np.mgrid[0 : self.height, 0 : self.width]
        self.bars = ((xs + ys) * 4 % 256).astype(np.float64)
        self.samples_per_frame = job.sample_rate / job.fps

    def initial_state(self) -> State:
        return {"acc": self.base.copy(), "frames": 0}

    def _loudness(self, index: int) -> float:
        lo = int(index * self.samples_per_frame)
        window = self.job.audio[lo : int((index + 1) * self.samples_per_frame)]
        return float(np.sqrt(np.mean(np.square(window, dtype=np.float64)))) if window.size else 0.0

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        acc = np.array(state["acc"], dtype=np.float64)
        frames = np.empty((count, self.height, self.width, 3), dtype=np.uint8)
        fail_at = self.job.options.get("fail_at_frame")
        bug_at = self.job.options.get("bug_at_frame")
        for offset in range(count):
            index = start + offset
            if fail_at is not None and index == fail_at:
                raise RenderError(f"testbars was told to fail at frame {index}")
            if bug_at is not None and index == bug_at:
                raise ZeroDivisionError(f"testbars has a bug at frame {index}")
            noise = np.random.default_rng([self.job.seed, index]).random(3)
            acc = (acc * 0.9 + noise * 40 + self._loudness(index) * 600) % 256
            for channel in range(3):
                frames[offset, :, :, channel] = (self.bars + acc[channel]) % 256
        return ChunkOutput(frames=frames, state={"acc": acc, "frames": int(state["frames"]) + count})


PATCH = 40  # side of the moving patch, pixels


def portrait_frame(path: Path, size: int) -> np.ndarray:
    """The portrait as an RGB frame of size x size pixels."""
    import cv2

    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


class PortraitPatchBackend(Backend):
    name: ClassVar[str] = "portraitpatch"
    version: ClassVar[str] = "1.0"

    def start_job(self, job: JobInput) -> JobRenderer:
        return PortraitPatchRenderer(portrait_frame(job.portrait_path, job.resolution))


class PortraitPatchRenderer(JobRenderer):
    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.height, self.width = base.shape[:2]

    def initial_state(self) -> State:
        return {"frames": 0}

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        frames = np.repeat(self.base[None], count, axis=0)
        for offset in range(count):
            index = start + offset
            y = (self.height // 4 + 3 * index) % (self.height - PATCH)
            x = self.width // 2
            # The patch shows the portrait's own pixels, shifted: still photographic content.
            frames[offset, y : y + PATCH, x : x + PATCH] = np.roll(
                self.base[y : y + PATCH, x : x + PATCH], index, axis=1
            )
        return ChunkOutput(frames=frames, state={"frames": int(state["frames"]) + count})


class EmoFaceBackend(EmoBackend):
    """`emoface`: the real emo backend (tiny weights in tests) drawn small in a corner of the
    portrait, so the face mesh finds a face whatever the tiny model draws; and the chunk that
    starts at frame `cast_at_frame` (option) is given a colour cast whenever it is rendered
    with the job's own seed. A quality retry renders it with the next seed (through the emo renderer's `reseed`),
    and the chunk passes: a chunk that fails its gate once, deliberately, on a stochastic backend.
    """

    name: ClassVar[str] = "emoface"
    options_schema: ClassVar[dict[str, Any]] = {
        **EmoBackend.options_schema,
        "properties": {**EmoBackend.options_schema["properties"], "cast_at_frame": {"type": "integer", "default": 10}},
    }

    def start_job(self, job: JobInput) -> JobRenderer:
        import dataclasses

        options = {k: v for k, v in job.options.items() if k != "cast_at_frame"}
        inner = super().start_job(dataclasses.replace(job, resolution=64, options=options))
        return EmoFaceRenderer(inner, portrait_frame(job.portrait_path, job.resolution), job.seed,
                               int(job.options["cast_at_frame"]))  # fmt: skip


CORNER = 32  # side of the emo frame drawn in the portrait's corner, pixels
CAST_RGB = np.array([24, 0, -24], np.int16)  # warmer: well over the face's colour-shift limit


class EmoFaceRenderer(JobRenderer):
    def __init__(self, inner: JobRenderer, base: np.ndarray, seed: int, cast_at_frame: int) -> None:
        self.inner, self.base, self.job_seed, self.seed = inner, base, seed, seed
        self.cast_at_frame = cast_at_frame
        self.height, self.width = base.shape[:2]

    def initial_state(self) -> State:
        return self.inner.initial_state()

    def reseed(self, seed: int) -> bool:
        self.seed = seed
        return self.inner.reseed(seed)

    def render_chunk(self, start: int, count: int, state: State) -> ChunkOutput:
        import cv2

        out = self.inner.render_chunk(start, count, state)
        frames = np.repeat(self.base[None], count, axis=0)
        for offset, small in enumerate(out.frames):
            frames[offset, -CORNER:, :CORNER] = cv2.resize(small, (CORNER, CORNER), interpolation=cv2.INTER_AREA)
        log = os.environ.get("EMO_TEST_RENDERED_CHUNKS")  # a file: "start seed" per chunk rendered
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{start} {self.seed}\n")
        if self.seed == self.job_seed and start == self.cast_at_frame:
            frames = np.clip(frames.astype(np.int16) + CAST_RGB, 0, 255).astype(np.uint8)
        return ChunkOutput(frames=frames, state=out.state)
