"""The manifest's `signing:` section as data: which key and certificate chain sign outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SigningFiles:
    """A configured C2PA signing identity: a private key and its certificate chain (PEM)."""

    key: Path
    certs: Path  # the signing certificate first, then its issuers
    origin: str  # where it was configured, for messages: "signing" (manifest) or "EMO_C2PA_KEY"
