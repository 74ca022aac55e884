"""The identity embedding Hallo conditions on: InsightFace's ONNX face models run with onnxruntime.

Hallo's download ships InsightFace's model pack in `face_analysis/models/` (a SCRFD detector
with 5 keypoints and an ArcFace recogniser, plus landmark and attribute models Hallo never
reads). Hallo runs them through `insightface.app.FaceAnalysis` (640x640 detection, threshold
0.5, NMS 0.4), keeps the largest face, aligns it to ArcFace's 112x112 five-point template with
a least-squares similarity transform, and feeds the recogniser's *raw* output (not the
L2-normalised one) to its image projection. With no face it uses a zero embedding.

This module does the same with onnxruntime alone. The insightface package is not a
dependency: it pulls a compiled extension, scikit-image and more for four short functions
(detection decode, NMS, the Umeyama similarity and the crop), which are written here to the
same arithmetic, so a given image gives the embedding insightface gives.
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo_cli.errors import WeightsError

log = logging.getLogger(__name__)

# ArcFace's five-point template in its 112x112 crop: eyes, nose tip, mouth corners (x, y).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
ARCFACE_SIZE = 112
DETECTION_SIZE = (640, 640)  # (width, height), Hallo's det_size
DETECTION_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
EMBEDDING_DIM = 512


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) mapping `src` points onto `dst`
    in the least-squares sense (Umeyama 1991), as scikit-image's `SimilarityTransform.estimate`
    computes it for insightface's `estimate_norm`."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    cov = dst_centred.T @ src_centred / n
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[dim - 1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("the landmarks are all one point: no similarity transform")
    rot = np.eye(dim)
    if rank == dim - 1:
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            rot = u @ vt
        else:
            last, d[dim - 1] = d[dim - 1], -1
            rot = u @ np.diag(d) @ vt
            d[dim - 1] = last
    else:
        rot = u @ np.diag(d) @ vt
    scale = (s @ d) / src_centred.var(axis=0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * (rot @ src_mean)
    return matrix


def align_face(rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The 112x112 ArcFace crop of the face whose five keypoints are given (insightface's
    `norm_crop`): the image warped by the similarity that maps the keypoints onto the template."""
    import cv2

    matrix = similarity_transform(np.asarray(keypoints, dtype=np.float32).reshape(5, 2), ARCFACE_TEMPLATE)
    return cv2.warpAffine(rgb, matrix, (ARCFACE_SIZE, ARCFACE_SIZE), borderValue=0.0)


@dataclass(frozen=True)
class Detection:
    """A face the detector found, in pixel coordinates of the image it was given."""

    box: np.ndarray  # (4,) x0, y0, x1, y1
    score: float
    keypoints: np.ndarray | None  # (5, 2) x, y: eyes, nose, mouth corners

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def anchor_centres(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """(height * width * anchors, 2) x, y centres of a SCRFD feature map's anchors, row-major."""
    centres = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
    centres = (centres * stride).reshape(-1, 2)
    if anchors > 1:
        centres = np.stack([centres] * anchors, axis=1).reshape(-1, 2)
    return centres


def decode_level(
    scores: np.ndarray,
    boxes: np.ndarray,
    keypoints: np.ndarray | None,
    *,
    stride: int,
    input_size: tuple[int, int],
    anchors: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One SCRFD pyramid level: raw head outputs -> (scores, boxes, keypoints) above `threshold`.

    Boxes are distances (left, top, right, bottom) from each anchor centre and keypoints are
    offsets from it, both in units of the stride.
    """
    width, height = input_size
    centres = anchor_centres(height // stride, width // stride, stride, anchors)
    scores = scores.reshape(-1)
    dist = boxes.reshape(-1, 4) * stride
    decoded = np.stack(
        [
            centres[:, 0] - dist[:, 0],
            centres[:, 1] - dist[:, 1],
            centres[:, 0] + dist[:, 2],
            centres[:, 1] + dist[:, 3],
        ],
        axis=-1,
    )
    keep = np.where(scores >= threshold)[0]
    kps = None
    if keypoints is not None:
        offsets = keypoints.reshape(centres.shape[0], -1, 2) * stride
        kps = (centres[:, None, :] + offsets)[keep]
    return scores[keep], decoded[keep], kps


def nms(dets: np.ndarray, threshold: float = NMS_THRESHOLD) -> list[int]:
    """Greedy non-maximum suppression over (n, 5) rows x0, y0, x1, y1, score (insightface's,
    with its +1 pixel box sizes): the indices kept, best first."""
    x0, y0, x1, y1, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x1[i], x1[order[1:]]) - np.maximum(x0[i], x0[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[order[1:]]) - np.maximum(y0[i], y0[order[1:]]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= threshold)[0] + 1]
    return keep


def _session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise WeightsError(f"{path} cannot be loaded by onnxruntime ({exc}); replace it with the file "
                           "from Hallo's download") from exc  # fmt: skip


class FaceDetector:
    """A SCRFD detector (InsightFace's ONNX export: 6, 9, 10 or 15 outputs)."""

    LAYOUTS = {6: (3, 2, False), 9: (3, 2, True), 10: (5, 1, False), 15: (5, 1, True)}

    def __init__(self, session, input_size: tuple[int, int] = DETECTION_SIZE) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        count = len(self.output_names)
        if count not in self.LAYOUTS:
            raise ValueError(f"a SCRFD detector has 6, 9, 10 or 15 outputs, this one has {count}")
        levels, self.anchors, self.use_keypoints = self.LAYOUTS[count]
        self.strides = [8, 16, 32, 64, 128][:levels]
        shape = session.get_inputs()[0].shape
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        self.input_size = (int(shape[3]), int(shape[2])) if fixed else input_size

    def detect(self, rgb: np.ndarray, threshold: float = DETECTION_THRESHOLD) -> list[Detection]:
        """Faces in an RGB uint8 image, best score first."""
        import cv2

        width, height = self.input_size
        if rgb.shape[0] / rgb.shape[1] > height / width:
            new_h, new_w = height, int(height / (rgb.shape[0] / rgb.shape[1]))
        else:
            new_w, new_h = width, int(width * (rgb.shape[0] / rgb.shape[1]))
        scale = new_h / rgb.shape[0]
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
        blob = ((canvas.astype(np.float32) - 127.5) * np.float32(1 / 128)).transpose(2, 0, 1)[None]
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(blob)})
        levels = len(self.strides)
        scores, boxes, kpss = [], [], []
        for i, stride in enumerate(self.strides):
            s, b, k = decode_level(
                outs[i], outs[i + levels], outs[i + 2 * levels] if self.use_keypoints else None,
                stride=stride, input_size=self.input_size, anchors=self.anchors, threshold=threshold,
            )  # fmt: skip
            scores.append(s)
            boxes.append(b)
            kpss.append(k)
        all_scores = np.concatenate(scores)
        if not all_scores.size:
            return []
        order = all_scores.argsort()[::-1]
        dets = np.hstack([np.vstack(boxes) / scale, all_scores[:, None]]).astype(np.float32, copy=False)[
            order
        ]
        keep = nms(dets)
        points = np.concatenate(kpss)[order][keep] / scale if self.use_keypoints else None
        return [
            Detection(
                box=dets[j, :4].copy(),
                score=float(dets[j, 4]),
                keypoints=None if points is None else points[n],
            )
            for n, j in enumerate(keep)
        ]


def _node_names(path: Path, limit: int) -> list[str]:
    """The names of the first `limit` nodes of an ONNX graph, read from the protobuf wire format
    (ModelProto.graph = field 7, GraphProto.node = 1, NodeProto.name = 3) without the onnx package."""

    def varint(buf, pos):
        value = shift = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    def fields(buf, start, end):
        pos = start
        while pos < end:
            key, pos = varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = varint(buf, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = varint(buf, pos)
                yield number, pos, pos + size
                pos += size
                continue
            else:
                raise ValueError(f"unsupported protobuf wire type {wire}")
            yield number, None, None

    names: list[str] = []
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for number, start, end in fields(buf, 0, len(buf)):
            if number != 7 or start is None:
                continue
            for node_field, ns, ne in fields(buf, start, end):
                if node_field != 1 or ns is None:
                    continue
                name = next(
                    (bytes(buf[a:b]).decode() for f, a, b in fields(buf, ns, ne) if f == 3 and a is not None),
                    "",
                )
                names.append(name)
                if len(names) >= limit:
                    return names
    return names


class FaceRecognizer:
    """An ArcFace recogniser (112x112 input, one embedding output)."""

    def __init__(self, session, path: Path) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        # insightface's rule: models converted from MXNet normalise inside the graph (a Sub and a
        # Mul among the first nodes) and take raw pixels; the others take (x - 127.5) / 127.5.
        names = _node_names(path, 8)
        in_graph = any(n.startswith(("Sub", "_minus")) for n in names) and any(
            n.startswith(("Mul", "_mul")) for n in names
        )
        self.mean, self.std = (0.0, 1.0) if in_graph else (127.5, 127.5)
        dim = session.get_outputs()[0].shape[-1]
        self.dim = dim if isinstance(dim, int) else EMBEDDING_DIM

    def embed(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """The raw (not normalised) embedding of a 112x112 RGB crop, float32 (dim,)."""
        x = (aligned_rgb.astype(np.float32) - np.float32(self.mean)) * np.float32(1 / self.std)
        blob = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        return self.session.run([self.output_name], {self.input_name: blob})[0].reshape(-1).astype(np.float32)


class FaceAnalysis:
    """The detector and recogniser of an InsightFace model folder, routed as insightface does:
    the first `*.onnx` (sorted by name) with five or more outputs detects, the first with a
    112x112 input recognises; the others (landmarks, gender/age) are not used by Hallo."""

    def __init__(self, models_dir: Path | str) -> None:
        models_dir = Path(models_dir)
        files = sorted(models_dir.glob("*.onnx"))
        self.detector: FaceDetector | None = None
        self.recognizer: FaceRecognizer | None = None
        for path in files:
            if self.detector is not None and self.recognizer is not None:
                break
            session = _session(path)
            shape = session.get_inputs()[0].shape
            if len(session.get_outputs()) >= 5:
                if self.detector is None:
                    self.detector = FaceDetector(session)
            elif shape[2:4] == [ARCFACE_SIZE, ARCFACE_SIZE] and self.recognizer is None:
                self.recognizer = FaceRecognizer(session, path)
        missing = [what for what, model in (("a face detector (SCRFD)", self.detector),
                                            ("a face recogniser (ArcFace, 112x112 input)", self.recognizer))
                   if model is None]  # fmt: skip
        if missing:
            raise WeightsError(f"{models_dir} has no {' and no '.join(missing)} among its .onnx files; copy "
                               "face_analysis/models/ from Hallo's download")  # fmt: skip

    def identity(self, rgb: np.ndarray) -> tuple[np.ndarray, Detection | None]:
        """Hallo's identity embedding of the largest face in an RGB image, and that face.

        No face: a zero embedding and None (Hallo then uses the whole image as the face region).
        """
        faces = self.detector.detect(np.ascontiguousarray(rgb))
        if not faces:
            log.info(
                "no face found by the InsightFace detector: the identity embedding is zeros, as in Hallo"
            )
            return np.zeros(self.recognizer.dim, dtype=np.float32), None
        face = sorted(faces, key=lambda f: f.area, reverse=True)[0]
        if face.keypoints is None:
            raise WeightsError("the face detector gives no keypoints, which the ArcFace alignment needs; use "
                               "Hallo's SCRFD model with keypoints (scrfd_10g_bnkps or det_10g)")  # fmt: skip
        return self.recognizer.embed(align_face(rgb, face.keypoints)), face
