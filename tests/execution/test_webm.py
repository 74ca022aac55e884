"""WebM (VP9 + Opus) as the format table's second row: it renders, resumes and carries its marks."""

from __future__ import annotations

import dataclasses
import json

import av
import numpy as np
import pytest
from factories import decoded_frames, make_job, write_wav

from emo_cli.backends.registry import get_backend_class
from emo_cli.execution.jobs import render_job
from emo_cli.execution.workdir import Journal
from emo_cli.planning.fingerprint import job_id
from emo_cli.provenance.tags import read_tags, sidecar_path
from emo_cli.provenance.verify import verify_video


@pytest.fixture
def webm_job(tmp_path, test_backends):
    voice = write_wav(tmp_path / "voice.wav", 1.0)
    return make_job(tmp_path / "out", audio=voice, backend="portraitpatch", resolution=256, output="a/voice.webm")


def test_a_webm_output_renders_resumes_and_is_marked(webm_job):
    backend = get_backend_class("portraitpatch")()
    assert render_job(webm_job, backend).status == "done"
    with av.open(str(webm_job.output)) as container:
        assert "webm" in container.format.name
        assert [s.codec_context.name for s in container.streams] == ["vp9", "opus"]
    frames = decoded_frames(webm_job.output)
    assert len(frames) == 25
    tags = read_tags(webm_job.output)
    assert tags["ai_generated"] == "true" and tags["emo_job_id"] == webm_job.id
    assert tags["emo_c2pa"] == "unsupported"
    sidecar = json.loads(sidecar_path(webm_job.output).read_text())
    assert "C2PA cannot sign video/webm" in sidecar["emo_c2pa_note"]

    # A run that stopped before the mux, with a damaged chunk: that chunk is rendered again, alone,
    # to the same bytes.
    work = webm_job.work_dir
    assert sorted(p.name for p in (work / "chunks").glob("*.webm")) == ["00000.webm", "00001.webm", "00002.webm"]
    before = (work / "chunks" / "00001.webm").read_bytes()
    (work / "chunks" / "00001.webm").write_bytes(b"damaged")
    webm_job.output.unlink()
    events: list[dict] = []
    assert render_job(webm_job, backend, events=events.append).chunks_rendered == 1
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == [1]
    assert (work / "chunks" / "00001.webm").read_bytes() == before
    assert all(np.array_equal(a, b) for a, b in zip(decoded_frames(webm_job.output), frames, strict=True))
    assert Journal.load(work).signer == "off"

    report = verify_video(webm_job.output)
    assert report.watermark.marked and report.watermark.job_id_prefix == webm_job.id[:8]
    assert report.sidecar.matches
    assert "C2PA cannot sign video/webm" in report.c2pa_note


def test_the_format_is_part_of_the_job_id_except_for_mp4(webm_job):
    settings = webm_job.settings
    ids = {fmt: job_id(portrait_sha256="p", audio_sha256="a", settings=dataclasses.replace(settings, format=fmt),
                       backend_version="1", weights_identity="w") for fmt in ("mp4", "webm")}  # fmt: skip
    assert ids["mp4"] != ids["webm"]
    assert "format" not in dataclasses.replace(settings, format="mp4").to_dict()  # MP4 ids stay as they were
