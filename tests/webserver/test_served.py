"""``python -m central serve`` as it runs in production: gunicorn over HTTPS with the fleet PKI.

One central process per module (real Mosquitto, a real TUF repository, certificates made by
``provisioning``). Each test is what a browser, a desk or an attacker on the network would see:
the certificate chain, the HSTS header, a plain-HTTP request getting no page, gunicorn's limits
refusing oversized requests before the app runs, and ``/tuf`` answering only an enrolled,
unrevoked desk.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.publish.repository import init_repository
from provisioning.device import DevicePki
from testbed.ports import free_port
from tests.fleet_key import write_command_key
from tests.fleet_tls import CENTRAL_SECRET, ROOT, FleetPki, https_get, start_served, stop_served, wait_https


@dataclass
class Served:
    url: str
    port: int
    pki: FleetPki
    desk: DevicePki
    root: Path
    log: Path


@pytest.fixture(scope="module")
def central(tmp_path_factory, mosquitto) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served-central")
    pki = FleetPki.create(root)
    desk = pki.enrol(root / "desk", "desk-served-01")
    repo = init_repository(root / "repo", root / "offline-root-keys")
    port = free_port()
    config = pki.central_config(root, mosquitto, port, repo.repo_dir, "central-served")
    log = root / "central.log"
    proc = start_served("central", config, log)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_https(url + "/healthz", pki.trust(), proc, log)
        yield Served(url, port, pki, desk, root, log)
    finally:
        assert stop_served(proc) == 0, log.read_text()


def test_https_with_the_fleet_ca_answers_and_carries_hsts(central):
    status, headers, body = https_get(central.url + "/healthz", central.pki.trust())
    assert status == 200 and b'"status":"ok"' in body.replace(b" ", b"")
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert headers["Server"] == "gunicorn"  # not Werkzeug's development server
    status, headers, _ = https_get(central.url + "/login", central.pki.trust())
    assert status == 200 and headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_client_without_the_ca_refuses_the_certificate(central):
    with pytest.raises(OSError) as refused:
        https_get(central.url + "/healthz", ssl.create_default_context())  # the system's CAs only
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


def test_plain_http_to_the_tls_port_gets_no_page(central):
    with socket.create_connection(("127.0.0.1", central.port), timeout=10) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1" not in answer and b"<html" not in answer.lower()


def _raw_https(central: Served, request: bytes) -> bytes:
    context = central.pki.trust()
    with socket.create_connection(("127.0.0.1", central.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    return answer


def test_gunicorn_refuses_an_over_long_request_line_before_the_app(central):
    answer = _raw_https(central, b"GET /login?next=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert b"Request Line is too large" in answer


def test_gunicorn_refuses_too_many_and_too_large_headers(central):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    answer = _raw_https(central, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    answer = _raw_https(central, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_tuf_answers_an_enrolled_desk_with_its_certificate(central):
    status, headers, body = https_get(central.url + "/tuf/metadata/1.root.json", central.pki.desk_tls(central.desk))
    assert status == 200 and json.loads(body)["signed"]["_type"] == "root"
    assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_tuf_gives_nothing_without_a_client_certificate(central):
    for path in ("/tuf/metadata/1.root.json", "/tuf/metadata/timestamp.json", "/tuf/targets/anything.db"):
        status, _, body = https_get(central.url + path, central.pki.trust())
        assert status == 403, path
        assert b"_type" not in body and b"enrolled desks presenting their fleet certificate" in body


def test_tuf_refuses_a_certificate_from_another_ca_at_the_handshake(central, tmp_path):
    stranger = FleetPki.create(tmp_path / "other")
    desk = stranger.enrol(tmp_path / "other-desk", "desk-served-01")  # the same name, the wrong CA
    context = ssl.create_default_context(cafile=str(central.pki.bundle))
    context.load_cert_chain(str(desk.cert), str(desk.key))
    with pytest.raises(OSError):
        https_get(central.url + "/tuf/metadata/1.root.json", context)


def test_tuf_refuses_a_revoked_desk(central, tmp_path):
    desk = central.pki.enrol(tmp_path / "desk", "desk-served-02")
    assert https_get(central.url + "/tuf/metadata/1.root.json", central.pki.desk_tls(desk))[0] == 200
    central.pki.revoke("desk-served-02")  # re-signs the CRL central reads: no restart
    status, _, body = https_get(central.url + "/tuf/metadata/1.root.json", central.pki.desk_tls(desk))
    assert status == 403 and b"_type" not in body
    assert "desk-served-02 is revoked" in central.log.read_text()
    # The other desk is unaffected.
    assert https_get(central.url + "/tuf/metadata/1.root.json", central.pki.desk_tls(central.desk))[0] == 200


def _serve_exits(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "central", "serve", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_central_without_a_certificate_does_not_start(tmp_path):
    config = tmp_path / "central.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\nport = 9\n'
                      f'[web]\nport = {free_port()}\nsecret_key = "{CENTRAL_SECRET}"\n')
    result = _serve_exits(config)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cert_file and key_file are not set: the web interface is served over HTTPS only" in result.stderr


def test_central_with_a_key_that_is_not_the_certificates_does_not_start(tmp_path):
    pki = FleetPki.create(tmp_path)
    other = FleetPki.create(tmp_path / "other")
    config = tmp_path / "central.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\nport = 9\n'
                      f'[web]\nport = {free_port()}\nsecret_key = "{CENTRAL_SECRET}"\n'
                      f'cert_file = "{pki.server_cert}"\nkey_file = "{other.server_key}"\n')
    result = _serve_exits(config)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "do not load together" in result.stderr


def test_the_firmware_launchers_ready_check_trusts_the_fleet_ca_only(central):
    """systemd's readiness and watchdog pings (firmware.launch) follow the HTTPS server with the fleet CA."""
    from firmware.launch import answers

    context = ssl.create_default_context(cafile=str(central.pki.bundle))
    context.check_hostname = False
    assert answers(central.url + "/login", timeout=5, context=context)
    assert not answers(central.url + "/login", timeout=5)  # the system's CAs do not know the fleet's
    assert not answers(f"http://127.0.0.1:{central.port}/login", timeout=5)  # no plain HTTP at all


def test_the_desk_without_a_certificate_does_not_start(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text(f'device_id = "desk-01"\ndata_dir = "{tmp_path}"\n'
                      f'fleet_command_public_key = "{write_command_key(tmp_path / "central-key")[1]}"\n'
                      f'[library]\npath = "{tmp_path / "lib.db"}"\nwrapped_key = "{tmp_path / "lib.wrapped"}"\n'
                      f'[web]\nport = {free_port()}\nsecret_key = "test-secret-key-0123456789"\n')
    result = subprocess.run([sys.executable, "-m", "appliance", "serve", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "appliance cannot start: [web] cert_file and key_file are not set" in result.stderr
    assert not (tmp_path / "device.db").exists()  # nothing was opened
