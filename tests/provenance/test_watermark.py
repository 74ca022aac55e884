"""The frame watermark on its own: payload coding, the library's decoder, determinism, cost-free
imports. End-to-end survival through encoding is in test_verify.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import portrait_frame
from factories import PLUGINS, PORTRAIT, REPO

from emo_cli.provenance import watermark as wm

JOB_ID = "3f2a9c7e01b4d5e6"


def library_codec(bits: np.ndarray):
    """invisible-watermark's DWT-DCT-SVD class, loaded from its own file: importing the package
    would import its rivaGan module and with it torch."""
    spec = importlib.util.find_spec("imwatermark")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "dwtDctSvd.py"
    module_spec = importlib.util.spec_from_file_location("imwatermark_dwtdctsvd", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.EmbedDwtDctSvd(watermarks=list(bits), wmLen=wm.PAYLOAD_BITS, scales=[0, int(wm.SCALE), 0])


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return portrait_frame(PORTRAIT, 512)


def test_payload_carries_the_job_id_prefix_and_a_check():
    bits = wm.payload_bits(JOB_ID)
    assert bits.shape == (48,) and set(np.unique(bits)) <= {0, 1}
    assert wm.read_payload(bits) == JOB_ID[:8]
    for flipped in (0, 20, 40, 47):
        damaged = bits.copy()
        damaged[flipped] ^= 1
        assert wm.read_payload(damaged) is None
    assert wm.read_payload(np.zeros(48, np.uint8)) is None
    assert wm.read_payload(np.ones(48, np.uint8)) is None


def test_with_the_librarys_layout_its_decoder_reads_our_mark_and_we_read_its(photo):
    """Same transform chain as invisible-watermark's dwtDctSvd: only the bit layout differs by
    default, and with group=1 (the library's layout) the two read each other's marks."""
    import cv2

    bits = wm.payload_bits(JOB_ID)
    ours = wm.FrameMarker(bits, group=1).mark_frame(photo)
    library = library_codec(bits)
    assert np.array_equal(library.decode(cv2.cvtColor(ours, cv2.COLOR_RGB2BGR)).astype(np.uint8), bits)
    theirs = cv2.cvtColor(library.encode(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)
    assert wm.detect([theirs], group=1).job_id_prefix == JOB_ID[:8]
    assert wm.detect([ours], group=1).job_id_prefix == JOB_ID[:8]
    # The default layout groups 2x2 blocks per bit, which the library's layout does not read.
    assert wm.detect([wm.mark_frames(photo[None], JOB_ID)[0]], group=1).job_id_prefix is None


def test_bit_layout_groups_neighbouring_blocks():
    assert wm.bit_index(2, 4, group=1).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert wm.bit_index(4, 4, group=2).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    counts = np.bincount(wm.bit_index(64, 64), minlength=48)
    assert counts.min() >= 4096 // 48 - 4 and counts.max() <= 4096 // 48 + 4


def test_mark_is_faint_and_a_pure_function_of_the_frame(photo):
    once = wm.mark_frames(photo[None], JOB_ID)[0]
    again = wm.FrameMarker.for_job(JOB_ID).mark_frame(photo)
    assert np.array_equal(once, again)
    diff = once.astype(float) - photo
    assert np.abs(diff[..., 0]).max() == 0  # red never changes
    assert 10 * np.log10(255**2 / np.mean(diff**2)) > 36  # PSNR in dB
    assert not np.array_equal(once, photo)
    # Marking works on a frame that is not a multiple of 8 (the edge is left as it is).
    odd = np.ascontiguousarray(photo[:300, :302])
    marked = wm.mark_frames(odd[None], JOB_ID)[0]
    assert np.array_equal(marked[296:], odd[296:]) and wm.detect([marked]).job_id_prefix == JOB_ID[:8]


def test_marking_the_encoders_u_plane_reads_as_marking_the_rgb_frame(photo):
    """The render loop marks the U plane of the YUV 4:2:0 frame it hands x264; the frame decoded
    back to RGB reads with the job's payload, like a frame marked in RGB and then converted."""
    import cv2

    from emo_cli.media.segment import rgb_to_yuv420p

    marker = wm.FrameMarker.for_job(JOB_ID)
    planar = rgb_to_yuv420p(photo, mark_u=marker.mark_u_cells)
    assert np.array_equal(planar[:512], rgb_to_yuv420p(photo)[:512])  # luma untouched
    decoded = cv2.cvtColor(planar, cv2.COLOR_YUV2RGB_I420)
    via_rgb = cv2.cvtColor(rgb_to_yuv420p(marker.mark_frame(photo)), cv2.COLOR_YUV2RGB_I420)
    for frame in (decoded, via_rgb):
        found = wm.detect([frame], scales=(1.0,))
        assert found.job_id_prefix == JOB_ID[:8] and found.confidence > 0.5
    assert not wm.detect([cv2.cvtColor(rgb_to_yuv420p(photo), cv2.COLOR_YUV2RGB_I420)]).marked
    # The change is one value per 2x2 cell of the half-size U plane, as the RGB mark's.
    u = cv2.extractChannel(cv2.cvtColor(photo, cv2.COLOR_RGB2YUV), 1)
    cells = cv2.resize(u, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
    marked = cells.copy()
    marker.mark_u_cells(marked)
    assert 0 < np.abs(marked - cells).max() <= wm.SCALE


def test_a_photo_without_the_mark_reads_unmarked(photo):
    found = wm.detect([photo, np.flipud(photo)])
    assert not found.marked and found.job_id_prefix is None
    flat = np.full((256, 256, 3), 128, np.uint8)
    assert not wm.detect([flat]).marked


def test_rendering_with_the_watermark_imports_neither_torch_nor_the_watermark_package(tmp_path):
    """The render loop's watermark is numpy + OpenCV: the `invisible-watermark` package (which
    imports torch through its rivaGan module) is never imported at render time."""
    script = (
        "import sys; from factories import make_job, make_plan; from emo_cli.execution import render\n"
        f"job = make_job({str(tmp_path)!r}, resolution=256, duration=0.4)\n"
        "summary = render(make_plan(job.output_dir, [job]))\n"
        "assert summary.exit_code == 0, summary.results\n"
        "print(sorted(m for m in ('torch', 'imwatermark', 'onnxruntime') if m in sys.modules))\n"
    )
    env_path = ":".join([str(REPO), str(PLUGINS), str(REPO / "tests")])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": env_path})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
