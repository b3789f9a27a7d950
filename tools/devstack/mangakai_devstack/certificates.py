"""A local certificate authority and one certificate per identity of the mesh, for mutual TLS.

Each identity ("gateway", "orchestrator", "renderer", "storage", "operator")
gets a certificate whose common name is the identity (what the services check
per RPC, see mangakai_runtime.identity) and whose names cover how the stack
reaches a service: its name in the stack's DNS and the loopback addresses of
its replicas. Keys are ECDSA P-256, written readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mangakai_devstack.dns import replica_host, service_name

VALIDITY = datetime.timedelta(days=30)
REPLICA_ADDRESSES = 16
OPERATOR = "operator"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(b"")
    os.chmod(path, 0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _settings(directory: Path, identity: str) -> dict[str, str]:
    return {
        "TLS_CA_FILE": str(directory / "ca.pem"),
        "TLS_CERT_FILE": str(directory / f"{identity}.pem"),
        "TLS_KEY_FILE": str(directory / f"{identity}.key"),
    }


def mesh_certificates(directory: Path, identities: Iterable[str]) -> dict[str, dict[str, str]]:
    """The TLS_* settings of each identity: the certificates in `directory` when they are all there
    (a stack started again keeps the CA its running services trust), new ones otherwise."""
    wanted = list(identities)
    existing = {identity: _settings(directory, identity) for identity in wanted}
    if all(Path(path).is_file() for files in existing.values() for path in files.values()):
        return existing
    return write_certificates(directory, wanted)


def write_certificates(directory: Path, identities: Iterable[str]) -> dict[str, dict[str, str]]:
    """Writes ca.pem and {identity}.pem/.key for each identity; returns each one's TLS_* settings."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mangakai local CA"))
        .issuer_name(_name("mangakai local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    addresses = [ipaddress.ip_address(replica_host(i)) for i in range(REPLICA_ADDRESSES)]
    settings: dict[str, dict[str, str]] = {}
    for identity in identities:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(service_name(identity)), x509.DNSName("localhost")]
        names += [x509.IPAddress(address) for address in addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(identity))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{identity}.pem", directory / f"{identity}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        settings[identity] = _settings(directory, identity)
    return settings
