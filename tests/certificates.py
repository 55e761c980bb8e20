"""
Real certificates for the TLS tests, made in the test with C{cryptography}:
a self-signed one (what ``openssl req -x509`` in README.rst's TLS section
makes), and one issued through an intermediate CA, as production
certificates are, for C{localhost} and C{127.0.0.1}.
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

_Key = ec.EllipticCurvePrivateKey


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, key: _Key, issuer: str, issuerKey: _Key, ca: bool) -> x509.Certificate:
    """
    A certificate for C{subject}'s C{key}, signed by C{issuer}; that of
    C{localhost} names C{127.0.0.1} too.
    """
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if subject == "localhost":
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuerKey, hashes.SHA256())


def _write(directory: str, name: str, *items: x509.Certificate | _Key) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        for item in items:
            if isinstance(item, x509.Certificate):
                f.write(item.public_bytes(serialization.Encoding.PEM))
            else:
                encoding, private = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
                f.write(item.private_bytes(encoding, private, serialization.NoEncryption()))
    return path


def selfSigned(directory: str | None = None) -> tuple[str, str]:
    """
    Write a fresh key and a self-signed certificate valid for a day, with
    C{localhost} and C{127.0.0.1} as subject alternative names.

    @return: the paths of the key and of the certificate (PEM).
    """
    directory = directory or tempfile.mkdtemp(prefix="realtime-tls-")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _issue("localhost", key, "localhost", key, ca=True)
    return _write(directory, "key.pem", key), _write(directory, "cert.pem", certificate)


def issuedThroughIntermediate(directory: str | None = None) -> dict[str, str]:
    """
    Write a root CA, an intermediate CA it signed, and a leaf certificate
    the intermediate signed, as a CA such as Let's Encrypt hands them out.

    @return: paths by name: C{root} (what clients trust), C{key},
        C{cert} (the leaf alone), C{chain} (the intermediate) and
        C{fullchain} (leaf then intermediate).
    """
    directory = directory or tempfile.mkdtemp(prefix="realtime-tls-")
    rootKey, middleKey, leafKey = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _issue("test root", rootKey, "test root", rootKey, ca=True)
    middle = _issue("test intermediate", middleKey, "test root", rootKey, ca=True)
    leaf = _issue("localhost", leafKey, "test intermediate", middleKey, ca=False)
    return {
        "root": _write(directory, "root.pem", root),
        "key": _write(directory, "privkey.pem", leafKey),
        "cert": _write(directory, "cert.pem", leaf),
        "chain": _write(directory, "chain.pem", middle),
        "fullchain": _write(directory, "fullchain.pem", leaf, middle),
    }


def sslEndpoint(keyPath: str, certPath: str, *extra: str) -> str:
    """
    The ``--port``/``--api-port`` endpoint string for TLS on loopback, on a
    port the kernel picks, with C{extra} C{KEY=VALUE} parameters.
    """
    return ":".join([f"ssl:0:interface=127.0.0.1:privateKey={keyPath}:certKey={certPath}", *extra])
