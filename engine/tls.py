"""The engine's certificates: a private CA and a server certificate it signs, made by `converge engine init`.

A private CA rather than a lone self-signed server certificate, so that the server certificate can be
renewed (new host names, `--force`) without every CLI and agent learning a new fingerprint: they pin the CA.
Keys are written readable by their owner only.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import BadInput

CA_VALID_DAYS = 3650
SERVER_VALID_DAYS = 825  # the longest that common TLS clients accept for a server certificate


@dataclass(frozen=True)
class TlsFiles:
    """Where the engine's certificates and keys live: `HOME/tls/`."""

    folder: Path

    @classmethod
    def under(cls, home: Path) -> TlsFiles:
        return cls(home / "tls")

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    def exist(self) -> bool:
        return all(p.is_file() for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key))


def fingerprint(pem: bytes) -> str:
    """The SHA-256 of a certificate's DER form, as `AB:CD:...`: what an operator compares and pins."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def same_fingerprint(a: str, b: str) -> bool:
    """Whether two fingerprints are equal, whatever their case and separators (`:` or none)."""

    def bare(text: str) -> str:
        return text.replace(":", "").replace(" ", "").lower()

    return bare(a) == bare(b)


def init(files: TlsFiles, extra_names: list[str], *, force: bool = False) -> str:
    """Make the CA and the server certificate unless they exist (or `force`); returns the CA's fingerprint.

    `force` renews the server certificate and keeps the CA, so that pinned fingerprints stay valid.
    """
    if files.exist() and not force:
        return fingerprint(files.ca_cert.read_bytes())
    files.folder.mkdir(parents=True, exist_ok=True)
    files.folder.chmod(0o700)
    if files.ca_cert.is_file() and files.ca_key.is_file():
        ca_key = _load_key(files.ca_key)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key)
        _write_key(files.ca_key, ca_key)
        files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, ca_key, ca_cert, _host_names(extra_names))
    _write_key(files.server_key, server_key)
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    return fingerprint(files.ca_cert.read_bytes())


def _host_names(extra: list[str]) -> list[str]:
    names = ["127.0.0.1", "::1", "localhost", socket.gethostname(), socket.getfqdn(), *extra]
    return list(dict.fromkeys(n for n in names if n))


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return x509.DNSName(name.encode("idna").decode("ascii"))
    except UnicodeError:
        raise BadInput(f"--san {name!r} is neither an IP address nor a host name") from None


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Converge engine CA")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[str],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(pem)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BadInput(
            f"{path} is not the EC key `converge engine init` writes: move it away and run it again"
        )
    return key
