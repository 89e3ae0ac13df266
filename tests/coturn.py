"""Debian's coturn as the tests' TURN server, with the TURN REST scheme (a shared secret), and a test CA for TLS."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

TURNSERVER = "/usr/bin/turnserver"
SECRET = "a-secret-the-tests-share-with-coturn"
REALM = "vgpustream"
STARTUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class TestCa:
    """A CA certificate and a server certificate (with key) it signed for one IP address, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def make_test_ca(directory: Path, address: str) -> TestCa:
    """A fresh CA and a certificate of it for `address` (subjectAltName IP), written into `directory`."""
    from cryptography import x509  # noqa: PLC0415 - only the TLS tests need it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vgpustream test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TestCa(directory / "ca.pem", directory / "turn-cert.pem", directory / "turn-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@contextmanager
def coturn(directory: Path, address: str, port: int, tls: TestCa | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """coturn on `address`:`port` (TCP and UDP; TLS on port + 1 with `tls`), checking TURN REST credentials
    made with SECRET, until the block ends. Skips where coturn is not installed."""
    if shutil.which(TURNSERVER) is None:
        pytest.skip(f"TURN tests need Debian's coturn at {TURNSERVER} (apt-get install coturn)")
    command = [TURNSERVER, "-n", f"--listening-ip={address}", f"--relay-ip={address}", f"--listening-port={port}",
               f"--realm={REALM}", "--use-auth-secret", f"--static-auth-secret={SECRET}", "--no-cli", "--no-dtls",
               "--allow-loopback-peers", f"--pidfile={directory / 'turnserver.pid'}",
               f"--log-file={directory / 'turnserver.log'}", "--simple-log"]  # fmt: skip
    if tls is None:
        command.append("--no-tls")
    else:
        command += [f"--tls-listening-port={port + 1}", f"--cert={tls.cert}", f"--pkey={tls.key}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(address, port + (tls is not None), process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(address: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"coturn exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((address, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"coturn does not listen on {address}:{port}")
