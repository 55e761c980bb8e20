"""
A real self-signed certificate for the TLS tests, made in the test with
C{cryptography}: what ``openssl req -x509`` in README.rst's TLS section
makes, for C{localhost} and C{127.0.0.1}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def selfSigned(directory: str | None = None) -> tuple[str, str]:
    """
    Write a fresh key and a self-signed certificate valid for a day, with
    C{localhost} and C{127.0.0.1} as subject alternative names.

    @return: the paths of the key and of the certificate (PEM).
    """
    directory = directory or tempfile.mkdtemp(prefix="realtime-tls-")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyPath = os.path.join(directory, "key.pem")
    certPath = os.path.join(directory, "cert.pem")
    with open(keyPath, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(certPath, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return keyPath, certPath


def sslEndpoint(keyPath: str, certPath: str) -> str:
    """
    The ``--port``/``--api-port`` endpoint string for TLS on loopback, on a
    port the kernel picks.
    """
    return f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}"
