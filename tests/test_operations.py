"""Operations: metrics, health and readiness, settings from flags/environment/file, TLS, hostile input."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import shutil
import ssl
import subprocess
import sys

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from tests.served import serve
from vgpustream.capture.stats import RATE_WINDOW, RateMeter
from vgpustream.errors import VgpuStreamError
from vgpustream.settings import add_arguments, load_settings


def metric_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError(name)


def test_fps_and_bitrate_read_true_from_the_first_frames_on():
    meter = RateMeter()
    assert meter.rates(0.0) == (0.0, 0.0)
    for n in range(16):  # half a second at 30 fps, 1000 bytes a frame
        meter.add(n / 30, 1000)
    assert meter.rates(15 / 30) == (pytest.approx(30), pytest.approx(240_000)), "not half of it"
    for n in range(16, 300):
        meter.add(n / 30, 1000)
    fps, bps = meter.rates(299 / 30)
    assert fps == pytest.approx(30, rel=0.03) and bps == pytest.approx(240_000, rel=0.03)
    assert meter.rates(299 / 30 + RATE_WINDOW + 0.1) == (0.0, 0.0), "stopped: nothing in the last window"


async def test_metrics_parse_and_move_when_frames_flow(make_server, http, viewers):
    server = await make_server(source="synthetic:320x240@30")
    receiver = await viewers(server)
    await receiver.next_frame()

    async def scrape() -> str:
        async with http.get(server.make_url("/metrics")) as response:
            assert response.status == 200 and response.content_type == "text/plain"
            return await response.text()

    first = await scrape()
    await asyncio.sleep(RATE_WINDOW + 0.5)  # fps is over the last RATE_WINDOW seconds: all of them encoding
    second = await scrape()
    encoded = "vgpustream_session_frames_encoded_total"
    assert metric_value(second, encoded, session="default") > metric_value(first, encoded, session="default") + 10
    assert metric_value(second, "vgpustream_session_viewers", session="default") == 1
    assert metric_value(second, "vgpustream_session_fps", session="default") > 10
    assert metric_value(second, "vgpustream_session_bitrate_bps", session="default") > 0
    assert metric_value(second, "vgpustream_session_source_state", session="default", state="streaming") == 1
    assert metric_value(second, "vgpustream_session_encode_seconds_count", session="default") > 10
    assert metric_value(second, "process_cpu_seconds_total") > 0


OPENMETRICS = "application/openmetrics-text"


async def test_metrics_negotiate_openmetrics_and_pass_promtool(make_server, http, viewers):
    server = await make_server(source="synthetic:320x240@30")
    await (await viewers(server)).next_frame()
    headers = {"Accept": f"{OPENMETRICS}; version=1.0.0; charset=utf-8"}
    async with http.get(server.make_url("/metrics"), headers=headers) as response:
        assert response.status == 200 and response.content_type == OPENMETRICS
        openmetrics = await response.text()
    assert openmetrics.endswith("# EOF\n")
    async with http.get(server.make_url("/metrics")) as response:
        assert response.content_type == "text/plain", "without asking, Prometheus' text format"
        text = await response.read()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus): the format is not checked")
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(checked.communicate(text), timeout=30)
    assert checked.returncode == 0, output.decode()


async def test_readyz_reports_a_lost_source_to_the_operator_only(make_server, anonymous, http, tmp_path):
    server = await make_server(source="synthetic:320x240@30")
    async with anonymous.get(server.make_url("/readyz")) as response:
        assert response.status == 200 and await response.json() == {"status": "ready"}
    # a VM that is down: the socket its VMM would hand the device over on is not there
    down = await make_server(source=f"vfio-fd:unix:{tmp_path}/vmm.sock")
    for _ in range(50):
        async with http.get(down.make_url("/readyz")) as response:
            if response.status == 503:
                assert (await response.json())["lost_sessions"] == ["default"]
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("a session whose source cannot be opened must make /readyz answer 503")
    async with anonymous.get(down.make_url("/readyz")) as response:
        assert response.status == 503
        assert await response.json() == {"status": "not ready"}, "no session names without a token"


@pytest.mark.parametrize(
    "source",
    [
        "vfio-fd:unix:/run/../etc/shadow",
        "qemu-dbus:unix:path=/run/user/../../etc/passwd",
        "synthetic:../1",
        "synthetic:\x00",
        "x" * 5000,
    ],
)
async def test_hostile_source_urls_are_refused(make_server, http, source):
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/api/v1/sessions"), json={"id": "evil", "source": source}) as response:
        assert response.status == 400
        message = (await response.json())["error"]["message"]
    assert len(message) < 300, "the error must not echo unbounded client text"


async def test_oversized_and_malformed_json(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    url = server.make_url("/api/v1/sessions")
    huge = {"id": "big", "source": "synthetic:320x240@30", "name": "x" * 100_000}
    async with http.post(url, json=huge) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "payload_too_large"
    for body in ("{", "[]", '"text"', "null", '{"id": 1, "source": []}'):
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400, body
    async with http.patch(server.make_url("/api/v1/sessions/default"), json={"fps": 10}) as response:
        assert response.status == 400, "unknown field"
    async with http.patch(server.make_url("/api/v1/sessions/default"), json={"encoder": {"fps": 0}}) as response:
        assert response.status == 400
    async with http.get(server.make_url("/healthz")) as response:
        assert response.status == 200


def test_settings_come_from_flags_then_environment_then_file(tmp_path):
    config = tmp_path / "vgpustream.toml"
    config.write_text('port = 9001\nmax_viewers = 3\nfps = 20\nice_server = ["stun:a.example:3478"]\n')
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--config", str(config), "--port", "9003"])
    environ = {"VGPUSTREAM_PORT": "9002", "VGPUSTREAM_MAX_VIEWERS": "5", "VGPUSTREAM_INSECURE_NO_AUTH": "yes"}
    settings = load_settings(args, environ)
    assert (settings.port, settings.max_viewers, settings.fps) == (9003, 5, 20)
    assert settings.insecure_no_auth is True
    assert settings.ice_server == ("stun:a.example:3478",)
    config.write_text("colour = 'red'\n")
    with pytest.raises(VgpuStreamError, match="unknown setting"):
        load_settings(args, {})
    with pytest.raises(VgpuStreamError, match="not a valid int"):
        load_settings(parser.parse_args(["--port", "eighty"]), {})


def test_serve_help_documents_every_setting():
    text = subprocess.run(
        [sys.executable, "-m", "vgpustream", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag, env in (
        ("--operator-token-file", "VGPUSTREAM_OPERATOR_TOKEN_FILE"),
        ("--state-dir", "VGPUSTREAM_STATE_DIR"),
        ("--tls-cert", "VGPUSTREAM_TLS_CERT"),
        ("--cors-origin", "VGPUSTREAM_CORS_ORIGIN"),
    ):
        assert flag in text and env in text
    assert "VGPUSTREAM_OPERATOR_TOKEN" in text, "secrets are documented as environment-only"


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls(tmp_path):
    cert, key = self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    with serve(tmp_path / "state", "--tls-cert", str(cert), "--tls-key", str(key), scheme="https") as served:
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{served.url}/healthz", ssl=trusted) as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with client.get(f"{served.url}/healthz", ssl=ssl.create_default_context()):
                    pass
        assert "https://127.0.0.1" in served.output(), "the start-up console link uses https"
