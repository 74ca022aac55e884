"""One job's provenance, typed, built once per job: what its output's tags, sidecar and C2PA
manifest say.

Publishing hands this record to the mux (`container_metadata`), the signer (`c2pa_manifest`)
and the sidecar (`sidecar`), so the settings, seed and watermark reach each of them as values,
never parsed back out of tag strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from emo_cli.planning.job import Job
from emo_cli.provenance.credentials import EMO_ASSERTION, TRAINED_ALGORITHMIC_MEDIA, ingredient
from emo_cli.provenance.identity import SigningIdentity
from emo_cli.provenance.tags import C2PA_OFF, C2PA_UNSUPPORTED, SIDECAR_FORMAT, TOOL, WATERMARK_OFF


def c2pa_supports(mime: str) -> bool:
    """Whether the installed c2pa can sign a file of media type `mime`."""
    import c2pa

    return mime in c2pa.Builder.get_supported_mime_types()


@dataclass(frozen=True)
class ProvenanceRecord:
    """What made one output: the job, this tool, the watermark, the signer and the time."""

    job: Job
    tool_version: str
    watermark: str  # "dwtDctSvd:<job id prefix>" or "off"
    signer: SigningIdentity | None  # None: signing is off for this job
    created: str  # ISO 8601 UTC, seconds, "Z"
    c2pa_note: str | None = None  # why the output carries no C2PA manifest though signing is on

    @classmethod
    def for_job(cls, job: Job, signer: SigningIdentity | None, *, created: datetime | None = None,
                c2pa_note: str | None = None) -> ProvenanceRecord:  # fmt: skip
        from emo_cli import __version__
        from emo_cli.provenance.watermark import watermark_tag

        when = (created or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        return cls(
            job=job,
            tool_version=__version__,
            watermark=watermark_tag(job.id) if job.settings.watermark else WATERMARK_OFF,
            signer=signer,
            created=when.isoformat().replace("+00:00", "Z"),
            c2pa_note=c2pa_note,
        )

    @property
    def signer_fingerprint(self) -> str:
        """How the output is signed, as the journal records it: certificate sha256, or "off"."""
        return self.signer.fingerprint if self.signer is not None else C2PA_OFF

    @property
    def c2pa(self) -> str:
        """The `emo_c2pa` tag: who signs (`local`, `manifest`, `environment`), `off`, or
        `unsupported` when signing is on but C2PA cannot sign the output's container."""
        if self.signer is not None:
            return self.signer.origin
        return C2PA_UNSUPPORTED if self.c2pa_note is not None else C2PA_OFF

    @property
    def consent(self) -> Mapping[str, Any] | None:
        return self.job.consent

    def facts(self) -> dict[str, Any]:
        """The provenance facts by tag name (see `tags.KEYS`), as typed values."""
        job = self.job
        facts: dict[str, Any] = {
            "ai_generated": True,
            "emo_tool": TOOL,
            "emo_tool_version": self.tool_version,
            "emo_backend": job.settings.backend,
            "emo_backend_version": job.backend_version,
            "emo_weights": job.weights_identity,
            "emo_job": job.name,
            "emo_job_id": job.id,
            "emo_portrait_sha256": job.portrait.sha256,
            "emo_audio_sha256": job.audio.sha256,
            "emo_seed": job.settings.seed,
            "emo_settings": job.settings.to_dict(),
        }
        consent = self.consent
        if consent is not None and consent.get("reference"):
            facts["emo_consent"] = str(consent["reference"])
        facts["emo_watermark"] = self.watermark
        facts["emo_c2pa"] = self.c2pa
        facts["emo_created"] = self.created
        return facts

    def tags(self) -> dict[str, str]:
        """The facts as container tags (strings; settings as compact JSON)."""
        out = {}
        for key, value in self.facts().items():
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, Mapping):
                out[key] = json.dumps(value, sort_keys=True, separators=(",", ":"))
            else:
                out[key] = str(value)
        return out

    def container_metadata(self) -> dict[str, str]:
        """What the mux writes into the container: the tags, then the standard `creation_time`
        and `comment`, for players that show only those."""
        return {
            **self.tags(),
            "creation_time": self.created,
            "comment": f"AI-generated with {TOOL} ({self.job.settings.backend} backend)",
        }

    def sidecar(self, output_name: str, output_sha256: str) -> dict[str, Any]:
        """The sidecar document (`<output>.provenance.json`): the facts plus the output's hash."""
        doc: dict[str, Any] = {"format": SIDECAR_FORMAT, "output": output_name, "output_sha256": output_sha256}
        doc.update(self.facts())
        if self.c2pa_note is not None:
            doc["emo_c2pa_note"] = self.c2pa_note
        return doc

    def c2pa_manifest(self, mime: str) -> dict[str, Any]:
        """The C2PA manifest definition for the output (of media type `mime`)."""
        job = self.job
        software = {"name": TOOL, "version": self.tool_version}
        consent = self.consent
        details: dict[str, Any] = {
            "job_id": job.id,
            "job": job.name,
            "backend": job.settings.backend,
            "backend_version": job.backend_version,
            "weights": job.weights_identity,
            "seed": job.settings.seed,
            "settings": job.settings.to_dict(),
            "portrait_sha256": job.portrait.sha256,
            "audio_sha256": job.audio.sha256,
            "watermark": self.watermark,
            "consent": None
            if consent is None
            else {k: str(consent[k]) for k in ("reference", "expires") if consent.get(k) is not None},
            "created": self.created,
        }
        return {
            "claim_generator_info": [software],
            "title": job.output.name,
            "format": mime,
            "ingredients": [
                ingredient("portrait", job.portrait.path, job.portrait.sha256),
                ingredient("audio", job.audio.path, job.audio.sha256),
            ],
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                "softwareAgent": software,
                                "description": "talking-head video generated from one portrait and an audio track "
                                f"({job.settings.backend} backend)",
                            }
                        ]
                    },
                },
                {"label": EMO_ASSERTION, "data": details},
            ],
        }
