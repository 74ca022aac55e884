"""The C2PA signing identity: a configured key and certificate chain, or a local one made once.

Where the identity comes from, first match wins:

1. the manifest's `signing: {key, certs}` (paths relative to the manifest);
2. the environment: `EMO_C2PA_KEY` and `EMO_C2PA_CERTS` (paths to PEM files);
3. a local identity, created on first use in `<config dir>/c2pa/` (the config dir is
   `EMO_CONFIG_DIR`, else the platform's user config dir for emo-cli): an own root CA and a
   leaf certificate issued by it. Only the leaf's key is kept (`signer.key`, mode 0600, in a
   0700 folder); the root's key is thrown away once the leaf is issued, so nothing can issue
   more certificates under that root. `root.pem` is the trust anchor to hand to
   `emo verify --trust-anchor`. Nobody else trusts this root, so such credentials show who
   signed but prove nothing to a third party; the render summary says so.

The leaf has the key usage C2PA validators require (digitalSignature, not a CA) and the
emailProtection extended key usage, which c2pa-rs accepts for claim signing by default.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emo_cli.errors import ProvenanceError
from emo_cli.fsutil import open_regular_file
from emo_cli.planning.job import SigningFiles

KEY_ENV = "EMO_C2PA_KEY"
CERTS_ENV = "EMO_C2PA_CERTS"
CONFIG_ENV = "EMO_CONFIG_DIR"
LOCAL_DIRNAME = "c2pa"
LOCAL_KEY = "signer.key"
LOCAL_CHAIN = "signer-chain.pem"
LOCAL_ROOT = "root.pem"
LOCAL_ORGANIZATION = "emo-cli local signing identity"


@dataclass(frozen=True)
class SigningIdentity:
    key_pem: bytes
    chain_pem: bytes  # signing certificate first
    alg: str  # c2pa signing algorithm name: es256, es384, es512, ed25519, ps256
    origin: str  # "local", "manifest" or "environment"
    where: str  # the folder (local) or the key file, for messages
    fingerprint: str  # sha256 of the signing certificate (DER)
    subject: str  # the signing certificate's subject, as RFC 4514 text

    @property
    def is_local(self) -> bool:
        return self.origin == "local"

    def describe(self) -> str:
        if self.is_local:
            return f"an untrusted local identity ({self.where})"
        return f"{self.subject} (key {self.where}, from the {self.origin})"


def config_dir() -> Path:
    """emo-cli's user config folder: `EMO_CONFIG_DIR`, else the platform's."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("emo-cli"))


def resolve_identity(configured: SigningFiles | None) -> SigningIdentity:
    """The identity to sign with: the manifest's, the environment's, or the local one.

    Raises:
        ProvenanceError: a configured key or chain is unreadable, malformed or mismatched, or
            only one of the two environment variables is set.
    """
    if configured is not None:
        return load_identity(configured.key, configured.certs, origin="manifest", field="signing")
    key, certs = os.environ.get(KEY_ENV), os.environ.get(CERTS_ENV)
    if key or certs:
        if not (key and certs):
            missing = CERTS_ENV if key else KEY_ENV
            raise ProvenanceError(f"{KEY_ENV} and {CERTS_ENV} go together; set {missing} too, or unset both")
        return load_identity(Path(key), Path(certs), origin="environment", field=KEY_ENV)
    return local_identity()


def load_identity(key_path: Path, certs_path: Path, *, origin: str, field: str) -> SigningIdentity:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    texts = {}
    for name, path in (("key", key_path), ("certs", certs_path)):
        try:
            with open_regular_file(path) as stream:  # a pipe or device would block or never end
                texts[name] = stream.read()
        except OSError as exc:
            raise ProvenanceError(
                f"{field}: the signing {name} file {path} cannot be read ({exc.strerror})"
            ) from exc
    try:
        key = serialization.load_pem_private_key(texts["key"], password=None)
    except (ValueError, TypeError) as exc:
        raise ProvenanceError(
            f"{field}: {key_path} is not an unencrypted PEM private key ({exc}); "
            "convert it with `openssl pkcs8 -topk8 -nocrypt`"
        ) from exc
    try:
        chain = x509.load_pem_x509_certificates(texts["certs"])
    except ValueError as exc:
        raise ProvenanceError(f"{field}: {certs_path} is not a PEM certificate chain ({exc})") from exc
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if leaf.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(encoding, public):
        raise ProvenanceError(
            f"{field}: the first certificate in {certs_path} is not for the key {key_path}; "
            "put the signing certificate first, then its issuers"
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningIdentity(
        key_pem=key_pem,
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
        alg=_algorithm(key, field, key_path),
        origin=origin,
        where=str(key_path),
        fingerprint=hashlib.sha256(leaf.public_bytes(encoding)).hexdigest(),
        subject=leaf.subject.rfc4514_string(),
    )


def _algorithm(key: object, field: str, path: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise ProvenanceError(
            f"{field}: {path} uses curve {key.curve.name}; C2PA needs P-256, P-384 or P-521"
        )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ProvenanceError(f"{field}: {path} holds a {type(key).__name__}; use an EC, Ed25519 or RSA key")


def local_dir() -> Path:
    return config_dir() / LOCAL_DIRNAME


def local_identity() -> SigningIdentity:
    """The local identity, created on first use (concurrent first uses agree on one)."""
    folder = local_dir()
    if not (folder / LOCAL_KEY).is_file():
        _create_local(folder)
    identity = load_identity(folder / LOCAL_KEY, folder / LOCAL_CHAIN, origin="local", field=str(folder))
    return SigningIdentity(**{**identity.__dict__, "where": str(folder)})


def _create_local(folder: Path) -> None:
    """Write a fresh identity into a private temporary folder, then rename it into place; a
    rename that loses a race leaves the winner's identity."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))  # mode 0700
    try:
        key_pem, chain_pem, root_pem = _issue_local()
        for name, data, mode in (
            (LOCAL_KEY, key_pem, 0o600),
            (LOCAL_CHAIN, chain_pem, 0o644),
            (LOCAL_ROOT, root_pem, 0o644),
        ):
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(staging, 0o700)
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / LOCAL_KEY).is_file():
                raise ProvenanceError(
                    f"cannot create the local signing identity in {folder}: it exists but has no {LOCAL_KEY}; "
                    "remove the folder or configure a signing key (EMO_C2PA_KEY, EMO_C2PA_CERTS)"
                ) from None
    except OSError as exc:
        raise ProvenanceError(
            f"cannot create the local signing identity in {folder} ({exc.strerror or exc}); "
            f"set {CONFIG_ENV} to a writable folder or configure a signing key"
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


def _issue_local() -> tuple[bytes, bytes, bytes]:
    """(leaf key, leaf + root chain, root certificate), all PEM. The root key is discarded."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def name(common: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, LOCAL_ORGANIZATION),
        ])  # fmt: skip

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False,
        )  # fmt: skip

    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(name("emo-cli local root"))
        .issuer_name(name("emo-cli local root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("emo-cli local signer"))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3649))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    root_pem = root.public_bytes(pem)
    return key_pem, leaf.public_bytes(pem) + root_pem, root_pem
