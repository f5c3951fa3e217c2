"""A throwaway certificate authority for mutual TLS on this machine (`MESH_TLS=1 make up`, and the tests).

`issue_mesh_certificates(folder, services)` writes `ca.pem` and, per service, `<service>.pem` and
`<service>.key`: each certificate is for 127.0.0.1 and localhost (so a channel to 127.0.0.1:<port>
verifies it) and names its workload with a SPIFFE id, `spiffe://shop/<service>`, which is what makes a
caller a trusted mesh service (service_runtime.identity). Keys are EC P-256, valid for a day; nothing here
is meant for a real deployment, where certificates come from the cluster's own issuer (cert-manager,
SPIRE, a service mesh).
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "shop"
LIFETIME = datetime.timedelta(days=1)


def spiffe_id(workload: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{workload}"


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    certificate_pem: bytes
    key_pem: bytes


def new_authority(name: str = "shop development CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Authority(key, certificate)


def issue(authority: Authority, workload: str, *, uri: str | None = None) -> Issued:
    """A certificate for `workload` (server and client use), for 127.0.0.1 and localhost, whose URI SAN
    is `uri` (default: the workload's SPIFFE id)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(workload),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.UniformResourceIdentifier(uri or spiffe_id(workload)),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, workload)]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(authority.key, hashes.SHA256())
    )
    return Issued(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


@dataclass(frozen=True)
class MeshFiles:
    ca: Path

    def certificate(self, workload: str) -> Path:
        return self.ca.with_name(f"{workload}.pem")

    def key(self, workload: str) -> Path:
        return self.ca.with_name(f"{workload}.key")

    def environment(self, workload: str) -> dict[str, str]:
        """The settings that make a process serve and call with this workload's certificate."""
        return {
            "TLS_CERT_FILE": str(self.certificate(workload)),
            "TLS_KEY_FILE": str(self.key(workload)),
            "TLS_CA_FILE": str(self.ca),
        }


def issue_mesh_certificates(folder: Path, workloads: Iterable[str], edge_clients: Iterable[str] = ()) -> MeshFiles:
    """A fresh CA and one certificate per workload (`spiffe://shop/<workload>`: a trusted mesh service) and
    per edge client (`spiffe://shop/edge/<name>`: a client the mesh lets in but does not trust, such as a
    BFF that passes shoppers' tokens on), written into `folder` (keys readable by the owner only)."""
    folder.mkdir(parents=True, exist_ok=True)
    authority = new_authority()
    files = MeshFiles(folder / "ca.pem")
    files.ca.write_bytes(authority.pem)
    names = [(workload, spiffe_id(workload)) for workload in workloads]
    names += [(name, spiffe_id(f"edge/{name}")) for name in edge_clients]
    for workload, uri in names:
        issued = issue(authority, workload, uri=uri)
        files.certificate(workload).write_bytes(issued.certificate_pem)
        key = files.key(workload)
        key.touch(mode=0o600)
        key.write_bytes(issued.key_pem)
    return files


def mesh_certificates(folder: Path, workloads: Iterable[str], edge_clients: Iterable[str] = ()) -> MeshFiles:
    """The certificates of `make up`'s mesh in `folder`: the ones there when every workload and edge client
    has one and the CA is less than half its lifetime old, else a fresh CA and set."""
    wanted, edges = list(workloads), list(edge_clients)
    files = MeshFiles(folder / "ca.pem")
    present = files.ca.exists() and all(
        files.certificate(name).exists() and files.key(name).exists() for name in (*wanted, *edges)
    )
    if present and time.time() - files.ca.stat().st_mtime < LIFETIME.total_seconds() / 2:
        return files
    return issue_mesh_certificates(folder, wanted, edges)


def client_channel(address: str, files: MeshFiles | None, workload: str = "devstack") -> grpc.aio.Channel:
    """A channel to a mesh service: plaintext, or mutual TLS with `workload`'s certificate when `files`."""
    if files is None:
        return grpc.aio.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key(workload).read_bytes(),
        certificate_chain=files.certificate(workload).read_bytes(),
    )
    return grpc.aio.secure_channel(address, credentials)
