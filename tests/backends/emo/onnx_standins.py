"""Tiny ONNX stand-ins for the models of Hallo's download, built with onnx's graph-building API.

They have the real models' input and output layouts (a SCRFD detector with keypoints, an
ArcFace recogniser with a 112x112 input, an MDX-Net separator on (batch, 4, 3072, 256)
spectrograms) and simple, known arithmetic, so a test runs the real onnxruntime code path and
can still compute the expected result by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPSET = 13


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="emo-cli-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@dataclass(frozen=True)
class FakeFace:
    """One detection the stand-in detector reports: a pyramid level, an anchor, raw head outputs."""

    stride: int
    anchor: int  # index among the level's anchors (row-major cells, 2 anchors per cell)
    score: float
    distances: tuple[float, float, float, float]  # left, top, right, bottom, in strides
    keypoints: tuple[float, ...] = (0.0,) * 10  # x, y offsets from the anchor centre, in strides


def detector_outputs(size: int, faces: list[FakeFace], background: float = 0.01) -> list[np.ndarray]:
    """The 9 output tensors (scores, boxes, keypoints for strides 8, 16, 32) of a SCRFD-10G-KPS."""
    scores, boxes, kps = [], [], []
    for stride in (8, 16, 32):
        n = (size // stride) ** 2 * 2
        s = np.full((n, 1), background, np.float32)
        b = np.ones((n, 4), np.float32)
        k = np.zeros((n, 10), np.float32)
        for face in faces:
            if face.stride == stride:
                s[face.anchor, 0] = face.score
                b[face.anchor] = face.distances
                k[face.anchor] = face.keypoints
        scores.append(s)
        boxes.append(b)
        kps.append(k)
    return scores + boxes + kps


def write_detector(path: Path, faces: list[FakeFace], size: int = 64) -> Path:
    """A detector with a fixed (1, 3, size, size) input whose outputs are the given faces
    (plus 0 x the input's mean, so the graph really reads its input)."""
    from onnx import TensorProto, helper, numpy_helper

    outputs = detector_outputs(size, faces)
    names = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in (8, 16, 32)]
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    inits = [numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
    for name, value in zip(names, outputs, strict=True):
        inits.append(numpy_helper.from_array(value, f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
    graph = helper.make_graph(
        nodes, "scrfd_standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape)) for n, v in zip(names, outputs, strict=True)],
        inits,
    )  # fmt: skip
    return _save(graph, path)


def write_recognizer(path: Path, weight: np.ndarray, mxnet_names: bool = False) -> Path:
    """An 'ArcFace' that returns the channel means of its (1, 3, 112, 112) input times `weight`
    (3, dim). With `mxnet_names`, its first nodes are named like an MXNet export's Sub/Mul."""
    from onnx import TensorProto, helper, numpy_helper

    prefix = ("Sub_0", "Mul_1") if mxnet_names else ("Conv_0", "Relu_1")
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["pooled"], axes=[2, 3], keepdims=0, name=prefix[0]),
        helper.make_node("MatMul", ["pooled", "weight"], ["embedding"], name=prefix[1]),
    ]
    graph = helper.make_graph(
        nodes, "arcface_standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, weight.shape[1]])],
        [numpy_helper.from_array(weight.astype(np.float32), "weight")],
    )  # fmt: skip
    return _save(graph, path)


def write_separator(path: Path, gain: float = 0.5, squash: bool = False) -> Path:
    """An 'MDX-Net' whose vocal spectrogram is `gain` x the mix's (`squash`: tanh of that, so the
    overlap-add of segments is not a plain sum): input and output (b, 4, 3072, 256)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Mul", ["input", "gain"], ["scaled" if squash else "output"])]
    if squash:
        nodes.append(helper.make_node("Tanh", ["scaled"], ["output"]))
    graph = helper.make_graph(
        nodes, "mdx_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, 3072, 256])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, 3072, 256])],
        [numpy_helper.from_array(np.array([gain], np.float32), "gain")],
    )  # fmt: skip
    return _save(graph, path)


MAIN_FACE = FakeFace(
    stride=16, anchor=(1 * 4 + 2) * 2, score=0.9, distances=(1.0, 0.5, 1.0, 2.0),
    keypoints=(-0.4, 0.3, 0.4, 0.3, 0.0, 0.8, -0.3, 1.3, 0.3, 1.3),
)  # fmt: skip


def write_face_models(models_dir: Path, dim: int = 16, faces: list[FakeFace] | None = None) -> Path:
    """A Hallo-style `face_analysis/models/` folder: detector, recogniser, and a landmark model
    that must be ignored (a 192x192 input)."""
    weight = np.random.default_rng(5).normal(0, 1, (3, dim)).astype(np.float32)
    write_detector(models_dir / "scrfd_10g_bnkps.onnx", [MAIN_FACE] if faces is None else faces)
    write_recognizer(models_dir / "glintr100.onnx", weight)
    write_recognizer(models_dir / "2d106det.onnx", weight)  # routed by shape, like insightface
    _retarget_input(models_dir / "2d106det.onnx", 192)
    return models_dir


def _retarget_input(path: Path, side: int) -> None:
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = side
    onnx.save(model, str(path))
