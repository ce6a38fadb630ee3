"""HTTPS for ``cloudherd serve``: the operator's certificate, or one the server makes for itself.

Why a self-signed option: a team server on a private network often has no name a public CA would sign,
and plain HTTP sends every bearer token and dashboard cookie in clear.  The made certificate is kept in
the data folder (made once: its fingerprint stays the one clients pinned) and its SHA-256 fingerprint is
printed at every start, so a client can check it (``curl --cacert``, httpx ``verify=``, or by the print).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cloudherd.api.metrics_view import is_loopback
from cloudherd.errors import UsageError
from cloudherd.paths import PRIVATE_FILE, data_dir, private_dir

SELF_SIGNED_DAYS = 825  # what browsers accept for a server certificate's life


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), as browsers and ``openssl x509 -fingerprint -sha256`` show it."""
        pem = self.cert.read_text()
        der = ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):])
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def configured(cert: Path | None, key: Path | None, self_signed: bool, host: str) -> Tls | None:
    """The TLS files to serve with, checked (a clear error for a missing, unreadable or mismatched pair)."""
    if self_signed and (cert or key):
        raise UsageError("--tls-self-signed or --tls-cert/--tls-key, not both")
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert and --tls-key go together (the certificate and its private key)")
    if self_signed:
        return _self_signed(host)
    if cert is None or key is None:
        return None
    tls = Tls(cert, key)
    _check(tls)
    return tls


def plain_warning(host: str, tls: Tls | None) -> str | None:
    """The one-line warning for a server reachable from the network without TLS; None when it is not."""
    if tls is not None or is_loopback(host):
        return None
    return (f"warning: serving on {host} without TLS: tokens and logins cross the network in clear "
            "(--tls-cert/--tls-key, or --tls-self-signed)")


def _check(tls: Tls) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.filename}: no such file") from None
    except PermissionError as exc:
        raise UsageError(f"{exc.filename}: not readable ({exc.strerror})") from None
    except ssl.SSLError as exc:
        raise UsageError(f"{tls.cert} / {tls.key}: not a PEM certificate and its private key "
                         f"({exc.reason or exc.strerror or 'unreadable'})") from None


def _self_signed(host: str) -> Tls:
    folder = private_dir(private_dir(data_dir() / "server") / "tls")
    tls = Tls(folder / "cert.pem", folder / "key.pem")
    if not (tls.cert.exists() and tls.key.exists()):
        _make(tls, host)
    _check(tls)
    return tls


def _make(tls: Tls, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified and not address.is_loopback:
            names.append(x509.IPAddress(address))
    except ValueError:
        if host not in ("localhost", ""):
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudherd serve")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(tls.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
