"""`emo report MANIFEST`: one self-contained page and report.json with the same facts."""

from __future__ import annotations

import html
import json
import re

import pytest
from typer.testing import CliRunner

from emo_cli.cli import app, main
from emo_cli.execution import render_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A manifest of three jobs: English rendered, Spanish rendered with a frozen mouth, French not
    rendered at all."""
    import shutil

    from factories import ASSETS

    folder = tmp_path_factory.mktemp("report")
    for name in ("astronaut.jpg", "hello_en.wav", "hello_es.wav", "hello_fr.wav"):
        shutil.copyfile(ASSETS / name, folder / name)
    manifest = folder / "m.yaml"
    manifest.write_text(
        "version: 1\noutput_dir: out\noutput: '{audio}.mp4'\n"
        "defaults: {backend: warp, fps: 25, resolution: 256, seed: 0, chunk_frames: 50}\n"
        "portraits: {astronaut: astronaut.jpg}\n"
        "audio: {en: hello_en.wav, es: hello_es.wav, fr: hello_fr.wav}\n"
        "jobs:\n"
        "  - {portrait: astronaut, audio: en}\n"
        "  - {portrait: astronaut, audio: es, settings: {warp: {expression: 0}}}\n"
        "  - {portrait: astronaut, audio: fr}\n"
    )
    summary = render_manifest(manifest, only=["astronaut/en", "astronaut/es"])
    assert summary.count("done") == 2
    result = runner.invoke(app, ["report", str(manifest)], env={"COLUMNS": "200"})
    return manifest, result


def test_the_report_exits_1_and_names_each_job_s_failures(rendered):
    manifest, result = rendered
    assert result.exit_code == 1, result.output
    assert re.search(r"astronaut/en\s+done\s+pass", result.output)
    assert re.search(r"astronaut/es\s+done\s+FAIL\s+lip-sync", result.output)
    assert re.search(r"astronaut/fr\s+pending\s+-", result.output)
    assert "report.html" in result.output and "report.json" in result.output


def test_report_json_has_the_facts_per_job(rendered):
    manifest, _ = rendered
    doc = json.loads((manifest.parent / "out" / "report.json").read_text())
    assert doc["format"] == 1 and doc["passed"] is False
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert [jobs[n]["state"] for n in ("astronaut/en", "astronaut/es", "astronaut/fr")] == ["done", "done", "pending"]
    assert jobs["astronaut/en"]["passed"] is True
    failed = [g["name"] for g in jobs["astronaut/es"]["qc"]["gates"] if g["passed"] is False]
    assert failed == ["lip-sync"]
    assert jobs["astronaut/fr"]["qc"] is None
    en = jobs["astronaut/en"]
    series = en["qc"]["series"]  # what the plot draws, per frame
    assert len(series["mouth"]) == len(series["loudness"]) == len(series["speech"]) == en["qc"]["frames"]
    assert len(en["qc"]["contact_sheet_frames"]) == 12 and en["qc"]["contact_sheet_frames"][0] == 0
    assert en["qc"]["figures"]["provenance"]["c2pa"] == "valid"
    assert en["qc"]["reference"].startswith("portrait ")
    assert en["timings"]["render_span_s"] >= 0 and en["timings"]["qc_s"] > 0
    assert en["timings"]["output_written"].endswith("Z")


def test_the_page_is_self_contained_and_shows_the_same_facts(rendered):
    manifest, _ = rendered
    page = (manifest.parent / "out" / "report.html").read_text()
    doc = json.loads((manifest.parent / "out" / "report.json").read_text())
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # every image inline, no links out
    assert page.count("data:image/jpeg;base64,") == 2  # a contact sheet per rendered job
    assert page.count("data:image/png;base64,") == 2  # a mouth-and-loudness plot per rendered job
    for job in doc["jobs"]:
        assert job["job"] in page and job["id"] in page
        for gate in (job["qc"] or {}).get("gates", []):
            assert html.escape(gate["name"]) in page and html.escape(gate["value"]) in page
    assert page.count("class='badge pass'") == 1 and page.count("class='badge fail'") == 1
    assert "No output to measure yet." in page


def test_an_invalid_manifest_exits_2_with_every_problem(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\njobs: 3\n")
    monkeypatch.setattr("sys.argv", ["emo", "report", str(bad)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "bad.yaml:2:7 jobs: expected a list" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_output_is_reported_and_the_other_jobs_still_are(rendered, tmp_path):
    manifest, _ = rendered
    out = manifest.parent / "out"
    broken = out / "es.mp4"
    saved = broken.read_bytes()
    broken.write_bytes(b"\x00" * 1000)
    try:
        result = runner.invoke(app, ["report", str(manifest), "--output-dir", str(tmp_path)], env={"COLUMNS": "200"})
    finally:
        broken.write_bytes(saved)
    assert result.exit_code == 1
    assert re.search(r"astronaut/es\s+done\s+unreadable\s+cannot open", result.output)
    doc = json.loads((tmp_path / "report.json").read_text())
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert jobs["astronaut/en"]["passed"] is True
    assert jobs["astronaut/es"]["qc"] is None and "cannot open" in jobs["astronaut/es"]["error"]
    assert "Cannot measure the output: cannot open" in (tmp_path / "report.html").read_text()
