"""C2PA content credentials: sign a finished MP4, and read a video's credentials back.

The manifest says emo-cli created the video (claim generator with version), with one
`c2pa.actions` entry: `c2pa.created`, digital source type trainedAlgorithmicMedia. The portrait
and the audio are `inputTo` ingredients identified by their sha256 only: their bytes, and any
thumbnail of them, never go into the video. An `org.emo-cli.provenance` assertion carries the
job id, the watermark payload, the settings and the consent reference.
"""

from __future__ import annotations

import mimetypes
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo_cli.errors import ProvenanceError
from emo_cli.fsutil import atomic_path, open_regular_file
from emo_cli.provenance.identity import SigningIdentity

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
EMO_ASSERTION = "org.emo-cli.provenance"
# Don't let the SDK make thumbnails: a thumbnail of an ingredient would embed the portrait.
_BUILD_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}


def ingredient(kind: str, path: Path, sha256: str) -> dict[str, Any]:
    """An `inputTo` ingredient identified by its role and sha256 alone (no thumbnail): its file
    name (often a person's name) stays private."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {
        "title": f"{kind} sha256:{sha256}",
        "format": mime,
        "relationship": "inputTo",
        "instance_id": f"sha256:{sha256}",
    }


def sign_video(
    source: Path,
    output: Path,
    manifest: Mapping[str, Any],
    identity: SigningIdentity,
    *,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write `source` signed with `manifest` to `output`, atomically (temp + rename).

    `before_rename` is called once the signed temporary is complete (a checkpoint hook).

    Raises:
        ProvenanceError: the SDK refused the key, the chain or the file.
    """
    import c2pa

    try:
        context = c2pa.Context(settings=c2pa.Settings.from_dict(_BUILD_SETTINGS))
        signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
        )
        with atomic_path(output) as tmp, c2pa.Builder(dict(manifest), context=context) as builder:
            with open(source, "rb") as src, open(tmp, "w+b") as dst:
                builder.sign(signer, "video/mp4", src, dst)
            if before_rename is not None:
                before_rename()
    except c2pa.C2paError as exc:
        if _out_of_space(output, source, exc):
            raise ProvenanceError(
                f"cannot write the signed {output}: the disk that holds it is full; free space on it and run "
                "the same command again (finished chunks are kept)"
            ) from exc
        raise ProvenanceError(
            f"cannot sign {output} with {identity.describe()}: {exc}; check that the certificate chain "
            "is valid now and that its signing certificate has the digitalSignature key usage and the "
            "emailProtection extended key usage"
        ) from exc


def _out_of_space(output: Path, source: Path, exc: Exception) -> bool:
    """Whether a failed signing ran out of disk (the SDK reports a failed write as its own error)."""
    text = str(exc).lower()
    if "no space" in text or "os error 28" in text or "quota" in text:
        return True
    try:
        return shutil.disk_usage(output.parent).free < source.stat().st_size + (1 << 20)
    except OSError:
        return False


@dataclass(frozen=True)
class Credentials:
    """What a video's C2PA manifest store says, in the terms `emo verify` reports."""

    status: str  # "trusted", "valid", "invalid", "absent" or "unsupported" (the format cannot carry C2PA)
    claim_generator: str | None = None
    signer: str | None = None  # issuer / common name of the signing certificate
    ai_generated: bool = False  # a c2pa.created action with an algorithmic digitalSourceType
    digital_source_type: str | None = None
    ingredients: tuple[dict[str, Any], ...] = ()
    emo: Mapping[str, Any] | None = None  # the org.emo-cli.provenance assertion
    failures: tuple[str, ...] = ()  # validation failure codes with explanations
    error: str | None = None  # why the store could not be read at all

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "claim_generator": self.claim_generator,
            "signer": self.signer,
            "ai_generated": self.ai_generated,
            "digital_source_type": self.digital_source_type,
            "ingredients": list(self.ingredients),
            "emo": dict(self.emo) if self.emo is not None else None,
            "failures": list(self.failures),
            "error": self.error,
        }


def read_credentials(path: Path | str, trust_anchors: str | None = None) -> Credentials:
    """Read and validate the C2PA manifest store of `path`.

    `trust_anchors` (PEM text) makes a chain to one of those roots read "trusted"; without
    it, a manifest whose signature and hashes check out reads "valid".
    """
    import c2pa

    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    try:
        context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
        with open(path, "rb") as stream:
            reader = c2pa.Reader.try_create(None, stream, context=context)
            if reader is None:
                return Credentials(status="absent")
            with reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                active = reader.get_active_manifest() or {}
    except OSError as exc:
        raise ProvenanceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except c2pa.C2paError as exc:
        if type(exc).__name__.endswith("ManifestNotFound"):
            return Credentials(status="absent")
        if type(exc).__name__.endswith("NotSupported"):
            # Matroska/WebM, MPEG-TS, FLV...: C2PA defines no place for a manifest in them, so
            # there is nothing to be invalid; a re-muxed copy lost its credentials on the way.
            return Credentials(status="unsupported", error="not supported for this format")
        return Credentials(status="invalid", error=str(exc))
    status = {"Trusted": "trusted", "Valid": "valid"}.get(str(state), "invalid")
    failures = tuple(
        f"{item.get('code')}: {item.get('explanation', '')}".strip()
        for item in (results.get("activeManifest") or {}).get("failure", [])
        if not (status == "valid" and item.get("code") == "signingCredential.untrusted")
    )
    source_type = None
    emo = None
    for assertion in active.get("assertions", []):
        label = assertion.get("label", "")
        if label.startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                if action.get("action") == "c2pa.created":
                    source_type = action.get("digitalSourceType")
        elif label == EMO_ASSERTION:
            emo = assertion.get("data")
    generators = active.get("claim_generator_info") or []
    generator = None
    if generators:
        first = generators[0]
        generator = " ".join(str(first[k]) for k in ("name", "version") if first.get(k))
    info = active.get("signature_info") or {}
    signer = ", ".join(str(info[k]) for k in ("common_name", "issuer") if info.get(k)) or None
    ingredients = tuple(
        {k: item.get(k) for k in ("title", "format", "relationship", "instance_id")}
        for item in active.get("ingredients", [])
    )
    return Credentials(
        status=status,
        claim_generator=generator,
        signer=signer,
        ai_generated=bool(source_type) and "algorithmicmedia" in str(source_type).lower(),
        digital_source_type=source_type,
        ingredients=ingredients,
        emo=emo,
        failures=failures,
    )


def trust_anchor_text(path: Path) -> str:
    """The PEM text of a trust anchor file, checked to hold at least one certificate."""
    try:
        with open_regular_file(path) as stream:
            text = stream.read().decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvenanceError(f"--trust-anchor {path} cannot be read ({exc})") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ProvenanceError(f"--trust-anchor {path} holds no PEM certificate")
    return text
