"""Opt-outs, signing identities and the consent policy: each is explicit and ends up in the
provenance."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from conftest import manifest_text, project, render_manifest_at
from typer.testing import CliRunner

from emo_cli.cli import app, main
from emo_cli.errors import ProvenanceError
from emo_cli.planning import plan_manifest
from emo_cli.provenance import identity
from emo_cli.provenance.tags import read_tags, sidecar_path
from emo_cli.provenance.verify import verify_video

OFF = "  provenance: {watermark: false, sign: false}"


def write(folder, text, name="m.yaml"):
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path):
    return project(tmp_path / "p", seconds=0.8)


def test_opt_outs_are_recorded_and_the_watermark_is_part_of_the_job_id(portrait_backend, folder):
    on = plan_manifest(write(folder, manifest_text(), "on.yaml")).jobs[0]
    unsigned = plan_manifest(
        write(folder, manifest_text(defaults="  provenance: {sign: false}"), "u.yaml")
    ).jobs[0]
    path = write(folder, manifest_text(defaults=OFF))
    off = plan_manifest(path).jobs[0]
    assert unsigned.id == on.id  # signing changes no frame
    assert off.id != on.id and off.settings.watermark is False and off.settings.sign is False

    summary, events = render_manifest_at(path)
    output = summary.results[0].output
    tags = read_tags(output)
    assert tags["emo_watermark"] == "off" and tags["emo_c2pa"] == "off"
    assert json.loads(tags["emo_settings"])["provenance"] == {"watermark": False}
    sidecar = json.loads(sidecar_path(output).read_text())
    assert sidecar["emo_watermark"] == "off" and sidecar["emo_c2pa"] == "off"
    assert next(e for e in events if e["event"] == "job_done")["credentials"] == "off"
    report = verify_video(output)
    assert report.credentials.status == "absent" and not report.watermark.marked
    assert report.marks == ("emo-cli provenance tags in the container",)  # still labelled


def test_turning_signing_on_re_signs_a_finished_job_without_rendering(portrait_backend, folder):
    path = write(folder, manifest_text(defaults="  provenance: {sign: false}"))
    summary, _ = render_manifest_at(path)
    output = summary.results[0].output
    assert verify_video(output).credentials.status == "absent"
    assert render_manifest_at(path)[0].results[0].status == "skipped"

    path.write_text(manifest_text())
    summary, events = render_manifest_at(path)
    (result,) = summary.results
    assert result.status == "done" and result.chunks_rendered == 0
    assert not [e for e in events if e["event"] == "chunk_done"]
    report = verify_video(output)
    assert report.credentials.status == "valid" and report.sidecar.matches
    assert read_tags(output)["emo_c2pa"] == "local"
    assert render_manifest_at(path)[0].results[0].status == "skipped"


def test_an_unknown_provenance_key_is_an_error(portrait_backend, folder):
    path = write(folder, manifest_text(defaults="  provenance: {watermrk: false}"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "defaults.provenance.watermrk: unknown key 'watermrk' (did you mean 'watermark'?)" in result.output


@pytest.mark.parametrize(
    ("face", "message"),
    [
        ("astronaut.jpg", "portrait 'face' has no consent record and policy.require_consent is true"),
        (
            "{path: astronaut.jpg, consent: {reference: R-1, subject: Jane Roe, expires: 2020-02-29}}",
            "consent for portrait 'face' expired on 2020-02-29 and policy.require_consent is true",
        ),
    ],
    ids=["missing", "expired"],
)
def test_the_consent_policy_stops_a_render(portrait_backend, folder, face, message, monkeypatch, capsys):
    path = write(folder, manifest_text(face=face, extra="policy: {require_consent: true}"))
    monkeypatch.setattr(sys, "argv", ["emo", "render", str(path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path}:12:5 jobs[0]: {message}" in err
    assert not (folder / "out" / "face").exists()


def test_consent_without_an_expiry_is_valid_and_recorded(portrait_backend, folder):
    face = "{path: astronaut.jpg, consent: {reference: OPEN-9, subject: Jane Roe}}"
    path = write(folder, manifest_text(face=face, defaults=OFF, extra="policy: {require_consent: true}"))
    summary, _ = render_manifest_at(path)
    assert read_tags(summary.results[0].output)["emo_consent"] == "OPEN-9"


def _issue_chain(folder):
    """A key and chain issued by a root of the test's own (the local-identity recipe, in a
    folder of the test's choosing)."""
    key_pem, chain_pem, root_pem = identity._issue_local()
    for name, data in (("signer.key", key_pem), ("chain.pem", chain_pem), ("root.pem", root_pem)):
        (folder / name).write_bytes(data)
    return folder / "signer.key", folder / "chain.pem", folder / "root.pem"


def test_a_key_from_the_environment_signs_and_is_trusted_with_its_root(portrait_backend, folder, monkeypatch):
    key, chain, root = _issue_chain(folder)
    monkeypatch.setenv(identity.KEY_ENV, str(key))
    monkeypatch.setenv(identity.CERTS_ENV, str(chain))
    path = write(folder, manifest_text())
    summary, events = render_manifest_at(path)
    output = summary.results[0].output
    assert read_tags(output)["emo_c2pa"] == "environment"
    done = next(e for e in events if e["event"] == "job_done")
    assert done["credentials_trusted"] is True and f"key {key}" in done["credentials"]
    assert verify_video(output, trust_anchor=root).credentials.status == "trusted"
    # Another root is no anchor for it.
    _, _, other_root = _issue_chain(folder / "..")
    assert verify_video(output, trust_anchor=other_root).credentials.status == "valid"


def test_half_an_environment_identity_fails_the_job_clearly(portrait_backend, folder, monkeypatch):
    key, _, _ = _issue_chain(folder)
    monkeypatch.setenv(identity.KEY_ENV, str(key))
    monkeypatch.delenv(identity.CERTS_ENV, raising=False)
    from emo_cli.execution import render_manifest

    summary = render_manifest(write(folder, manifest_text()))
    (result,) = summary.results
    assert result.status == "failed"
    assert "EMO_C2PA_KEY and EMO_C2PA_CERTS go together; set EMO_C2PA_CERTS too" in result.error


def test_manifest_signing_files_are_checked(portrait_backend, folder):
    key, chain, _ = _issue_chain(folder)
    path = write(folder, manifest_text(extra="signing: {key: absent.key, certs: chain.pem}"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert (
        result.exit_code == 2
        and "signing.key:" in result.output
        and "absent.key does not exist" in result.output
    )

    other = folder / "other"
    other.mkdir()
    other_key, _, _ = _issue_chain(other)
    path.write_text(
        manifest_text(extra=f"signing: {{key: {other_key.relative_to(folder)}, certs: chain.pem}}")
    )
    from emo_cli.execution import render_manifest

    (result,) = render_manifest(path).results
    assert result.status == "failed"
    assert "signing: the first certificate in" in result.error and "is not for the key" in result.error

    path.write_text(manifest_text(extra="signing: {key: signer.key, certs: chain.pem}"))
    summary, _ = render_manifest_at(path)
    assert read_tags(summary.results[0].output)["emo_c2pa"] == "manifest"


def test_the_local_identity_is_made_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.setenv(identity.CONFIG_ENV, str(tmp_path / "config"))
    monkeypatch.delenv(identity.KEY_ENV, raising=False)
    monkeypatch.delenv(identity.CERTS_ENV, raising=False)
    first = identity.resolve_identity(None)
    again = identity.resolve_identity(None)
    assert first.is_local and first.fingerprint == again.fingerprint
    folder = tmp_path / "config" / "c2pa"
    assert first.where == str(folder)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / identity.LOCAL_KEY).st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["root.pem", "signer-chain.pem", "signer.key"]
    assert [p.name for p in folder.parent.iterdir()] == ["c2pa"]  # no staging folder left


def test_a_broken_local_identity_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(identity.CONFIG_ENV, str(tmp_path))
    (tmp_path / "c2pa").mkdir()
    (tmp_path / "c2pa" / "stray.txt").write_text("x")
    with pytest.raises(ProvenanceError, match="exists but has no signer.key; remove the folder"):
        identity.local_identity()


def test_the_render_summary_names_the_untrusted_local_identity(portrait_backend, folder):
    result = CliRunner().invoke(app, ["render", str(write(folder, manifest_text()))])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Content credentials are signed by an untrusted local identity" in text
    assert "EMO_C2PA_KEY / EMO_C2PA_CERTS" in text
    again = CliRunner().invoke(app, ["render", str(write(folder, manifest_text()))])
    assert again.exit_code == 0 and "skipped" in again.output
    assert "untrusted local identity" not in again.output  # said once, when the outputs were signed
