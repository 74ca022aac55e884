"""Invisible watermark: the job id, hidden in every frame, readable after re-encoding.

The method is invisible-watermark's DWT-DCT-SVD ("dwtDctSvd"): the U channel of the frame in
OpenCV's YUV is split by a one-level Haar DWT; the low band is cut into 4x4 blocks; each
block's largest singular value (after a DCT) is moved to the lower or upper quarter of a bin
to carry one bit. Two parameters differ from the library's defaults, both measured on
photographic video (benchmarks/provenance_cost.py):

- Bit layout: the library gives bit k to every block whose row-major number is k modulo the
  payload length, so neighbouring blocks carry different bits. Here 2x2 groups of blocks (16x16
  pixels) share a bit. A half-size copy in yuv420p keeps one chroma sample per 8x8 block of
  the original, and H.264 keeps the mean of a 4x4 chroma transform block far better than its
  detail: with the library's layout a half-size CRF 23 copy read about 80% of the bits, with
  2x2 groups all of them, and at full size the margins grow too. `group=1` is the library's
  layout exactly: with it the library's decoder (`EmbedDwtDctSvd(wmLen=48, scales=[0, 48,
  0]).decode(bgr)`) reads frames marked here, and frames it marks read here (tested).
- Bin width 48, not 36: more margin against re-encoding, at about 39 dB PSNR (the change is a
  faint blue-yellow tint, constant over each 8x8 block).

Why it is cheap (the library's Python loop costs ~50 ms per 512x512 frame): the DCT is
orthonormal, so it changes neither the singular values nor the rank-one update. Moving the
top singular value of DCT(B) by d is adding d * u v^T to B itself, where (s, u, v) is B's top
singular triplet; every block is done at once with numpy (a few power-iteration steps: the
blocks are positive, so the top singular value stands well apart). The inverse Haar of a
low-band change is that change spread over 2x2 pixels, and the change is applied straight to
R, G, B as the colour that moves U alone (Y and V fixed), so no YUV round trip requantizes Y
and V. The render loop goes one step further (`FrameMarker.mark_u_cells`): it marks the U plane
of the YUV 4:2:0 frame it hands the encoder, in floating point before that plane is rounded,
where a 2x2 cell is one sample; 0.4-0.7 ms per 512x512 frame (benchmarks/provenance_cost.py).
Each frame's mark is a pure function of the frame and the payload, so a resumed render marks
exactly as an uninterrupted one.

Payload (48 bits): the first 32 bits of the job id, then a 16-bit check (CRC-32 of those four
bytes, low half), all XORed with a fixed mask so flat or unmarked content (whose blocks read
alike) never forms a valid word. Detection takes a soft vote of every block of every frame.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

METHOD = "dwtDctSvd"
SCALE = 48.0  # bin width (the library's default is 36; see above)
BLOCK = 4
ID_BITS = 32
CHECK_BITS = 16
PAYLOAD_BITS = ID_BITS + CHECK_BITS
POWER_STEPS = 3
GROUP = 2  # payload bits go to 2x2 groups of blocks (1: the library's own layout)
# R, G, B change that moves OpenCV's U by 1 while Y and V stay put (from the BT.601 weights
# OpenCV uses: Y = .299R + .587G + .114B, U = .492(B - Y) + 128, V = .877(R - Y) + 128).
_U_TO_RGB = np.array([0.0, -0.114 / 0.587 / 0.492, 1.0 / 0.492], dtype=np.float32)
_MASK = np.unpackbits(np.frombuffer(hashlib.sha256(b"emo-cli watermark v1").digest()[:6], dtype=np.uint8))
# A mark is reported when the check matches and the votes agree at least this much.
MIN_CONFIDENCE = 0.2


def payload_bits(job_id: str) -> np.ndarray:
    """The 48 payload bits (uint8 0/1) that mark a video of job `job_id` (16 hex digits)."""
    ident = bytes.fromhex(job_id[: ID_BITS // 4])
    check = (zlib.crc32(ident) & 0xFFFF).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(ident + check, dtype=np.uint8)) ^ _MASK


def watermark_tag(job_id: str) -> str:
    """The `emo_watermark` tag of a marked video: method and the job id prefix it carries."""
    return f"{METHOD}:{job_id[: ID_BITS // 4]}"


def read_payload(bits: np.ndarray) -> str | None:
    """The job id prefix (8 hex digits) carried by `bits`, or None if the check fails."""
    raw = np.packbits(np.asarray(bits, dtype=np.uint8) ^ _MASK).tobytes()
    ident, check = raw[: ID_BITS // 8], raw[ID_BITS // 8 :]
    if (zlib.crc32(ident) & 0xFFFF).to_bytes(2, "big") != check:
        return None
    return ident.hex()


def bit_index(rows: int, cols: int, group: int = GROUP) -> np.ndarray:
    """Which payload bit each block (row-major) carries: group x group neighbouring blocks
    share one, numbered row-major over the groups, modulo the payload length."""
    i, j = np.divmod(np.arange(rows * cols), cols)
    groups_across = -(-cols // group)
    return ((i // group) * groups_across + j // group) % PAYLOAD_BITS


def _grid(height: int, width: int) -> tuple[int, int]:
    """Blocks down and across, as the library counts them (crop to /4, Haar halves, /4)."""
    return (height // 4 * 2) // BLOCK, (width // 4 * 2) // BLOCK


def _low_band(u: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Haar low band of the U plane's block grid, float32 (4 rows, 4 cols per block)."""
    import cv2

    px = u[: rows * 8, : cols * 8].astype(np.float32)
    # A 2x2 area mean is exact for a halving; the Haar low band is twice that mean.
    return cv2.resize(px, (cols * 4, rows * 4), interpolation=cv2.INTER_AREA) * 2.0


def _as_blocks(ca: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(4, 4, n) block-major view of the low band: element [i, j] of every block, side by side,
    so each step below is one vector operation over all blocks."""
    return np.ascontiguousarray(ca.reshape(rows, 4, cols, 4).transpose(1, 3, 0, 2).reshape(4, 4, rows * cols))


def _top_singular(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top singular value and vectors of every 4x4 block in `blocks` (4, 4, n)."""
    v = np.full(blocks.shape[1:], 0.5, dtype=np.float32)
    for _ in range(POWER_STEPS):
        w = np.einsum("ijn,jn->in", blocks, v, optimize=False)
        v = np.einsum("ijn,in->jn", blocks, w, optimize=False)
        v /= np.maximum(np.sqrt((v * v).sum(axis=0)), 1e-12)
    w = np.einsum("ijn,jn->in", blocks, v, optimize=False)
    s = np.sqrt((w * w).sum(axis=0))
    return s, w / np.maximum(s, 1e-12), v


def _u_plane(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.extractChannel(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV), 1)


class FrameMarker:
    """Marks frames with one payload (a pure function of the frame and the payload)."""

    def __init__(self, bits: np.ndarray, group: int = GROUP) -> None:
        self.bits = np.asarray(bits, dtype=np.uint8)
        self.group = group
        self._bit_grid: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def for_job(cls, job_id: str) -> FrameMarker:
        return cls(payload_bits(job_id))

    def mark(self, frames: np.ndarray) -> np.ndarray:
        """Marked copies of `frames` (uint8 RGB, (n, H, W, 3))."""
        out = frames.copy()
        for index in range(frames.shape[0]):
            self.mark_in_place(out[index])
        return out

    def mark_frame(self, rgb: np.ndarray) -> np.ndarray:
        out = rgb.copy()
        self.mark_in_place(out)
        return out

    def _bits_for(self, rows: int, cols: int) -> np.ndarray:
        grid = self._bit_grid.get((rows, cols))
        if grid is None:
            grid = self.bits[bit_index(rows, cols, self.group) % self.bits.size].astype(np.float32)
            self._bit_grid[(rows, cols)] = grid
        return grid

    def _u_change(self, low_band: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """The change of OpenCV's U at each 2x2 pixel cell that marks a frame whose Haar low
        band is `low_band`: (rows * 4, cols * 4) float32, one value per cell."""
        s, u, v = _top_singular(_as_blocks(low_band, rows, cols))
        target = (np.floor(s / SCALE) + 0.25 + 0.5 * self._bits_for(rows, cols)) * SCALE
        # The rank-one update, halved: the inverse Haar (zero detail bands) spreads each
        # low-band change as change/2 over its 2x2 pixels.
        delta = (0.5 * (target - s)) * u[:, None, :] * v[None, :, :]
        return delta.reshape(4, 4, rows, cols).transpose(2, 0, 3, 1).reshape(rows * 4, cols * 4)

    def mark_in_place(self, rgb: np.ndarray) -> None:
        """Mark one uint8 RGB frame (H, W, 3), in place."""
        import cv2

        rows, cols = _grid(*rgb.shape[:2])
        if rows == 0 or cols == 0:
            return
        half = self._u_change(_low_band(_u_plane(rgb), rows, cols), rows, cols)
        # rint(x + d) == x + rint(d) for integer x, so the rounding happens at half size. The
        # signed step travels as step + 128 in a uint8 image, upsampled once, and is applied by
        # addWeighted, which adds before it saturates: exactly clip(x + step, 0, 255).
        offset = np.full(half.shape, 128, dtype=np.uint8)  # red never changes
        coded = cv2.merge([offset, *(np.rint(half * _U_TO_RGB[c] + 128).astype(np.uint8) for c in (1, 2))])
        coded = cv2.resize(coded, (cols * 8, rows * 8), interpolation=cv2.INTER_NEAREST)
        whole = rows * 8 == rgb.shape[0] and cols * 8 == rgb.shape[1] and rgb.flags.c_contiguous
        region = rgb if whole else np.ascontiguousarray(rgb[: rows * 8, : cols * 8])
        cv2.addWeighted(region, 1.0, coded, 1.0, -128.0, dst=region)
        if not whole:
            rgb[: rows * 8, : cols * 8] = region

    def mark_u_cells(self, u: np.ndarray) -> None:
        """Mark a frame through its U at half size, in place: `u` is OpenCV's U of each 2x2 pixel
        cell, (H / 2, W / 2) float32, as `emo_cli.media.segment.rgb_to_yuv420p` computes it for
        the encoder, before it is rounded.

        The same mark as `mark_in_place`, read the same way, without the RGB round trip: the
        Haar low band is twice this plane, and the change is one value per cell. This is what
        the render loop uses.
        """
        rows, cols = _grid(2 * u.shape[0], 2 * u.shape[1])
        if rows == 0 or cols == 0:
            return
        region = u[: rows * 4, : cols * 4]
        region += self._u_change(np.ascontiguousarray(region) * np.float32(2), rows, cols)


def mark_frames(frames: np.ndarray, job_id: str) -> np.ndarray:
    """Marked copies of `frames` for job `job_id` (one-off; the render loop keeps a FrameMarker)."""
    return FrameMarker.for_job(job_id).mark(frames)


def frame_votes(rgb: np.ndarray, scale: float = 1.0, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """(ones, counts) per payload bit from one frame: how many blocks read 1, of how many.

    `scale` is how much larger the marked original was: a half-size copy is read with 2.0,
    where each 4x4 pixel block already is (half) one low-band block of the original, so no
    interpolation blurs the blocks into each other.
    """
    import cv2

    height, width = rgb.shape[:2]
    rows, cols = _grid(round(height * scale), round(width * scale))
    if rows == 0 or cols == 0:
        return np.zeros(PAYLOAD_BITS), np.zeros(PAYLOAD_BITS)
    crop_h, crop_w = min(height, round(rows * 8 / scale)), min(width, round(cols * 8 / scale))
    u = _u_plane(rgb[:crop_h, :crop_w]).astype(np.float32)
    if (crop_w, crop_h) != (cols * 4, rows * 4):
        shrink = crop_w > cols * 4
        u = cv2.resize(u, (cols * 4, rows * 4), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    s, _, _ = _top_singular(_as_blocks(u * 2.0, rows, cols))
    # Soft vote: +1 at the centre of the upper quarter (bit 1), -1 at the lower; a value near
    # a quarter boundary, where noise could push it either way, counts for little.
    soft = -np.sin(2 * np.pi * np.mod(s, SCALE) / SCALE).astype(np.float64)
    ones = (soft + 1) * 0.5
    index = bit_index(rows, cols, group)
    return (
        np.bincount(index, ones, PAYLOAD_BITS),
        np.bincount(index, minlength=PAYLOAD_BITS).astype(np.float64),
    )


@dataclass(frozen=True)
class Detection:
    """What the votes say: the bits, the job id prefix if the check matches, how sure."""

    bits: tuple[int, ...]
    job_id_prefix: str | None  # None: no valid payload
    confidence: float  # mean over bits of |2 * share of ones - 1|: 0 noise, 1 unanimous
    frames: int
    scale: float  # the upscale factor at which it was read (2.0 for a half-size copy)

    @property
    def marked(self) -> bool:
        return self.job_id_prefix is not None and self.confidence >= MIN_CONFIDENCE


def detect(
    frames: Iterable[np.ndarray], scales: Iterable[float] = (1.0, 2.0), group: int = GROUP
) -> Detection:
    """Vote every frame at each upscale factor; the best reading with a valid payload wins.

    A copy scaled down by k is read as if it were k times larger, where its blocks line up
    with the original's again.
    """
    scales = tuple(scales)
    ones = {s: np.zeros(PAYLOAD_BITS) for s in scales}
    counts = {s: np.zeros(PAYLOAD_BITS) for s in scales}
    seen = 0
    for rgb in frames:
        seen += 1
        for scale in scales:
            o, c = frame_votes(rgb, scale, group)
            ones[scale] += o
            counts[scale] += c
    best: Detection | None = None
    for scale in scales:
        share = ones[scale] / np.maximum(counts[scale], 1)
        bits = (share > 0.5).astype(np.uint8)
        confidence = float(np.mean(np.abs(2 * share - 1))) if counts[scale].any() else 0.0
        found = Detection(tuple(int(b) for b in bits), read_payload(bits), round(confidence, 4), seen, scale)
        rank = (found.job_id_prefix is not None, found.confidence)
        if best is None or rank > (best.job_id_prefix is not None, best.confidence):
            best = found
    assert best is not None
    return best
