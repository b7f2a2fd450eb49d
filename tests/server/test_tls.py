"""HTTPS: a self-signed certificate made here; the client signs in and deploys over it with that CA,
refuses it without; a host beyond loopback without TLS is refused at start."""
from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from blankly_magics.client import DeploymentClient, DeploymentError
from tests.fixtures_server import wait_for, write_model_zip
from tests.server.runs import TICKER


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blankly test server")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_client_signs_in_and_deploys_over_https_with_the_servers_ca(
    server_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # as a user points requests at a private CA
    server = server_factory(args=["--tls-cert", str(cert), "--tls-key", str(key)])
    assert server.url.startswith("https://127.0.0.1:")
    assert server.health()["isolation"] == "bubblewrap"
    token = server.refresh_token("alice")
    with DeploymentClient(server.url, token) as client:
        client.login()
        answer = client.deploy(write_model_zip(tmp_path / "tick.zip", files={"bot.py": TICKER}), plan="nano",
                               name="over tls")
        model_id = answer["modelId"]
        wait_for(lambda: "tick 2" in client.model_logs(model_id)["text"], "the model's ticks over https")
        assert client.kill(model_id)["state"] == "stopped"

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")  # the machine's own bundle only: it does not know this CA
    with DeploymentClient(server.url, token, retries=0) as stranger:
        with pytest.raises(DeploymentError) as info:
            stranger.login()
    assert "TLS failed talking to" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert token not in str(info.value)


def test_a_host_beyond_loopback_without_tls_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blankly_magics.server", "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --host 0.0.0.0 listens beyond this machine")
    assert "--tls-cert/--tls-key" in line and "--insecure-http" in line
    assert not (tmp_path / "d" / "server.json").exists()


def test_half_a_tls_pair_or_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "blankly_magics.server", "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--tls-cert", str(cert)], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "--tls-cert and --tls-key go together" in done.stderr
    (tmp_path / "other").mkdir()
    other_key = self_signed(tmp_path / "other")[1]
    mismatched = subprocess.run(
        [sys.executable, "-m", "blankly_magics.server", "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--tls-cert", str(cert), "--tls-key", str(other_key)], capture_output=True, text=True, timeout=120,
    )
    assert mismatched.returncode == 2
    assert mismatched.stderr.strip().startswith(f"error: cannot use --tls-cert {cert} with --tls-key {other_key}")
