"""End to end: render photographic frames, then check every mark with `emo verify`, on the
final MP4 and on copies re-encoded, downscaled and stripped of metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import PortraitPatchBackend, manifest_text, project, reencode, render_manifest_at
from typer.testing import CliRunner

from emo_cli.backends import registry
from emo_cli.cli import app
from emo_cli.execution.journal import Journal
from emo_cli.fsutil import sha256_file
from emo_cli.media.ffmpeg import run_ffmpeg
from emo_cli.provenance.identity import LOCAL_ROOT, local_dir
from emo_cli.provenance.tags import read_tags, sidecar_path
from emo_cli.provenance.verify import verify_video

CONSENTED_FACE = (
    "{path: astronaut.jpg, consent: {reference: REL-2026-014, subject: Jane Roe, expires: 2999-12-31}}"
)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One render with every mark on (the defaults), shared by the tests of this module."""
    folder = project(tmp_path_factory.mktemp("rendered"))
    manifest = folder / "m.yaml"
    manifest.write_text(manifest_text(face=CONSENTED_FACE, extra="policy: {require_consent: true}"))
    registry._registered[PortraitPatchBackend.name] = PortraitPatchBackend
    try:
        summary, events = render_manifest_at(manifest)
    finally:
        registry._registered.pop(PortraitPatchBackend.name, None)
    (result,) = summary.results
    return SimpleNamespace(
        folder=folder, output=result.output, job_id=result.job_id, result=result, events=events
    )


def run_verify(*args: str):
    return CliRunner().invoke(app, ["verify", *args])


def test_the_final_mp4_carries_every_mark(rendered):
    report = verify_video(rendered.output)
    assert report.marked and report.exit_code == 0
    assert report.credentials.status == "valid"  # signed by the local identity, not trusted
    assert report.credentials.ai_generated
    assert report.credentials.claim_generator.startswith("emo-cli ")
    assert report.tags["ai_generated"] == "true" and report.tags["emo_job_id"] == rendered.job_id
    assert report.sidecar.present and report.sidecar.matches, report.sidecar.problems
    assert report.watermark.marked and report.watermark.job_id_prefix == rendered.job_id[:8]
    assert report.watermark_matches_job is True
    assert report.watermark.scale == 1.0 and report.watermark.confidence > 0.4
    # The journal holds the hash of the signed file, which resume compares against.
    (work,) = (rendered.folder / "out" / ".emo" / "jobs").iterdir()
    journal = Journal.load(work)
    assert journal.output_sha256 == sha256_file(rendered.output) and journal.signer not in (None, "off")
    assert not (work / "unsigned.mp4").exists()


def test_the_summary_says_who_signed(rendered):
    done = next(e for e in rendered.events if e["event"] == "job_done")
    assert done["credentials"].startswith("an untrusted local identity")
    assert done["credentials_trusted"] is False
    assert done["watermark"] == f"dwtDctSvd:{rendered.job_id[:8]}"
    assert rendered.result.credentials == done["credentials"]


def test_credentials_are_trusted_with_the_local_root_as_anchor(rendered):
    anchor = local_dir() / LOCAL_ROOT
    report = verify_video(rendered.output, trust_anchor=anchor)
    assert report.credentials.status == "trusted"
    result = run_verify(str(rendered.output), "--trust-anchor", str(anchor), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["c2pa"]["status"] == "trusted"


def test_the_manifest_names_inputs_by_hash_and_carries_consent(rendered):
    creds = verify_video(rendered.output).credentials
    tags = read_tags(rendered.output)
    assert (
        creds.digital_source_type == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    )
    assert [i["instance_id"] for i in creds.ingredients] == [
        f"sha256:{tags['emo_portrait_sha256']}",
        f"sha256:{tags['emo_audio_sha256']}",
    ]
    assert {i["relationship"] for i in creds.ingredients} == {"inputTo"}
    # Titles name the role and the hash, never the file: names like private_face.jpg stay private.
    assert [i["title"] for i in creds.ingredients] == [
        f"portrait sha256:{tags['emo_portrait_sha256']}",
        f"audio sha256:{tags['emo_audio_sha256']}",
    ]
    assert b"astronaut" not in rendered.output.read_bytes()
    assert b"voice.wav" not in rendered.output.read_bytes()
    assert creds.emo["job_id"] == rendered.job_id
    assert creds.emo["consent"] == {"reference": "REL-2026-014", "expires": "2999-12-31"}
    assert tags["emo_consent"] == "REL-2026-014"
    sidecar = json.loads(sidecar_path(rendered.output).read_text())
    assert sidecar["emo_consent"] == "REL-2026-014" and sidecar["emo_c2pa"] == "local"
    # The portrait is an ingredient by hash only: none of its bytes are in the video.
    portrait = (rendered.folder / "astronaut.jpg").read_bytes()
    video = rendered.output.read_bytes()
    assert portrait[1000:1064] not in video and b"JFIF" not in video


def test_a_tampered_file_reads_invalid_but_stays_marked(rendered, tmp_path):
    data = bytearray(rendered.output.read_bytes())
    at = data.index(b"mdat") + 4000
    data[at] ^= 0x55
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(data)
    report = verify_video(tampered)
    assert report.credentials.status == "invalid"
    assert any("mismatch" in failure for failure in report.credentials.failures), report.credentials.failures
    assert not report.sidecar.present
    assert report.marked  # the tags and the watermark still say so


# The README's limits (benchmarks/watermark_limits.py): at 512 px a full-size re-encode up to
# CRF 28 and a 0.5x downscale at CRF 23 keep the mark; a 0.5x downscale at CRF 28 does not, here.
@pytest.mark.parametrize(
    ("crf", "scale"), [(23, None), (28, None), (23, 0.5)], ids=["crf23", "crf28", "half-size"]
)
def test_the_watermark_survives_reencoding_and_metadata_stripping(rendered, tmp_path, crf, scale):
    copy = reencode(rendered.output, tmp_path / "copy.mp4", crf=crf, scale=scale)
    report = verify_video(copy)
    assert report.tags == {} and report.credentials.status == "absent"
    assert report.watermark.job_id_prefix == rendered.job_id[:8]
    assert report.watermark.marked
    assert report.watermark.scale == (2.0 if scale else 1.0)
    assert report.marks == (
        f"invisible watermark of job {rendered.job_id[:8]}, confidence {report.watermark.confidence:.2f}",
    )
    result = run_verify(str(copy))
    assert result.exit_code == 0
    assert "is marked as AI-generated (invisible watermark of job" in " ".join(result.output.split())


def test_a_sidecar_beside_another_file_does_not_match(rendered, tmp_path):
    copy = reencode(rendered.output, tmp_path / "copy.mp4", strip=False)
    shutil.copyfile(sidecar_path(rendered.output), sidecar_path(copy))
    report = verify_video(copy)
    assert report.sidecar.present and report.sidecar.matches is False
    assert any("output_sha256" in problem for problem in report.sidecar.problems)


def test_a_video_never_made_by_emo_cli_is_unmarked(tmp_path):
    plain = tmp_path / "camera.mp4"
    run_ffmpeg(["-loop", "1", "-i", str(Path(__file__).parents[2] / "manifests" / "assets" / "astronaut.jpg"),
                "-t", "1", "-r", "25", "-vf", "scale=512:512", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                str(plain)], what="encode", file=plain)  # fmt: skip
    report = verify_video(plain)
    assert not report.marked and report.exit_code == 1
    assert report.credentials.status == "absent" and report.tags == {} and not report.watermark.marked
    result = run_verify(str(plain))
    assert result.exit_code == 1
    assert "carries no AI-generated mark" in " ".join(result.output.split())


def test_verify_json_reports_everything(rendered):
    result = run_verify(str(rendered.output), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ai_generated"] is True and len(doc["marks"]) == 3
    assert doc["c2pa"]["status"] == "valid" and doc["c2pa"]["ai_generated"] is True
    assert doc["tags"]["emo_job_id"] == rendered.job_id
    assert doc["sidecar"]["matches"] is True
    wm = doc["watermark"]
    assert wm["found"] is True and wm["job_id_prefix"] == rendered.job_id[:8] and wm["matches_job"] is True
    assert 0 < wm["confidence"] <= 1 and wm["frames"] == 30
    assert doc["verdict"].startswith(f"{rendered.output.name} is marked as AI-generated")


def test_verify_refuses_what_is_not_a_video(tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video")
    result = run_verify(str(junk))
    assert result.exit_code == 2
    assert f"cannot read the metadata of {junk}" in " ".join(result.output.split())
    assert run_verify(str(tmp_path / "absent.mp4")).exit_code == 2
    anchor = tmp_path / "anchor.pem"
    anchor.write_text("no certificate here")
    video = tmp_path / "v.mp4"
    shutil.copyfile(junk, video)
    result = run_verify(str(video), "--trust-anchor", str(anchor))
    assert result.exit_code == 2 and "holds no PEM certificate" in result.output


@pytest.mark.parametrize("container", ["mkv", "webm", "ts"])
def test_a_container_c2pa_cannot_carry_reads_not_supported_not_invalid(rendered, tmp_path, container):
    copy = tmp_path / f"copy.{container}"
    codec = (
        ["-c:v", "libvpx-vp9", "-b:v", "2M", "-deadline", "realtime"]
        if container == "webm"
        else ["-c", "copy"]
    )
    run_ffmpeg(["-i", str(rendered.output), "-map", "0:v:0", *codec, str(copy)], what="re-mux", file=copy)
    report = verify_video(copy)
    assert report.credentials.status == "unsupported"
    assert report.credentials.error == "not supported for this format"
    assert report.watermark.marked  # the pixels still say so
    result = run_verify(str(copy))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "C2PA credentials │ not supported for this format" in text and "invalid" not in text
    assert json.loads(run_verify(str(copy), "--json").output)["c2pa"]["status"] == "unsupported"
