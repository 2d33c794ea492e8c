"""A fleet PKI for tests that talk HTTPS, and the served processes (``python -m ... serve``) over it.

``FleetPki`` makes a real fleet CA with ``provisioning`` (the same code the enrolment commands run),
central's web server certificate (``server-cert``), and enrols desks with their client and web server
certificates (``device-keygen --web-name``, ``issue --web-csr``, ``device-install``). Revoking re-signs
the CRL as ``python -m provisioning revoke`` does.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from devicekeys.tls import client_context
from provisioning import crl, device, issue, tokens
from provisioning.ca import CaLayout, IssuingCa, init_ca
from provisioning.device import DevicePki
from provisioning.ledger import Ledger
from tests.fleet_key import write_command_key

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
CENTRAL_SECRET = "9f2c4e6a8b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f"  # 32 random bytes


@dataclass(frozen=True)
class FleetPki:
    """A fleet CA with central's web certificate; ``enrol`` adds desks."""

    ca_dir: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def create(cls, root: Path) -> FleetPki:
        layout = init_ca(root / "ca", organisation="Test Constabulary", broker_names=list(LOOPBACK_NAMES))
        ca = IssuingCa.load(layout.ca_dir)
        with Ledger(layout.ledger) as ledger:
            crl.write_crl(ca, ledger)
            cert, key = issue.issue_server_certificate(ca, ledger, list(LOOPBACK_NAMES), root / "central-web")
        return cls(layout.ca_dir, cert, key)

    @property
    def bundle(self) -> Path:
        return CaLayout(self.ca_dir).bundle

    @property
    def crl(self) -> Path:
        return CaLayout(self.ca_dir).crl

    def enrol(self, data_dir: Path, device_id: str, *, web: bool = False, tpm=None) -> DevicePki:  # type: ignore[no-untyped-def]
        """A desk enrolled as the commands do it; with ``web`` also its HTTPS certificate for the loopback."""
        ca = IssuingCa.load(self.ca_dir)
        with Ledger(ca.layout.ledger) as ledger:
            token = tokens.new_token(ledger, device_id)
            pki, _mode = device.keygen(data_dir, device_id, tpm, LOOPBACK_NAMES if web else ())
            issued = issue.issue_device_certificate(ca, ledger, pki.csr.read_bytes(), token,
                                                    web_csr_pem=pki.web_csr.read_bytes() if web else None)
        bundle = issue.write_bundle(Path(data_dir).parent / f"bundle-{device_id}", ca, issued, None)
        return device.install_bundle(data_dir, device_id, bundle)

    def revoke(self, device_id: str) -> None:
        ca = IssuingCa.load(self.ca_dir)
        with Ledger(ca.layout.ledger) as ledger:
            ledger.revoke_device(device_id, datetime.now(UTC))
            crl.write_crl(ca, ledger)

    def trust(self) -> ssl.SSLContext:
        """A client that trusts the fleet CA and shows no certificate (a browser, a stranger)."""
        return ssl.create_default_context(cafile=str(self.bundle))

    def desk_tls(self, pki: DevicePki) -> ssl.SSLContext:
        """A desk's client context: trusts the fleet CA, shows the desk's fleet certificate."""
        return client_context(pki.ca, pki.cert, pki.key)

    def update_settings(self, pki: DevicePki) -> dict[str, Path]:
        """The ``[updates]`` TLS keys a desk is configured with after enrolment."""
        return {"ca_file": pki.ca, "cert_file": pki.cert, "key_file": pki.key}

    def central_config(self, root: Path, broker, port: int, repo_dir: Path, client_id: str) -> Path:  # type: ignore[no-untyped-def]
        """``root/central.toml`` for ``python -m central serve`` on ``port``: the broker, the TUF repository,
        HTTPS with this PKI's certificate, /tuf for its desks, two web workers, the tests' fleet-command key."""
        config = Path(root) / "central.toml"
        command_key, _public = write_command_key(Path(root) / "central-key")
        config.write_text(
            f'data_dir = "{Path(root) / "central"}"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "{client_id}"\n'
            f'[publish]\nrepo_dir = "{repo_dir}"\n'
            f'[web]\nport = {port}\nsecret_key = "{CENTRAL_SECRET}"\nworkers = 2\nthreads = 4\n'
            + self.central_web_toml() + f'[fleet]\ncommand_key = "{command_key}"\n')
        return config

    def central_web_toml(self) -> str:
        """Central's ``[web]`` TLS lines (inside its [web] section)."""
        return (f'cert_file = "{self.server_cert}"\nkey_file = "{self.server_key}"\n'
                f'client_ca_file = "{self.bundle}"\ncrl_file = "{self.crl}"\n')


def desk_web_toml(pki: DevicePki) -> str:
    """A desk's ``[web]`` TLS lines (inside its [web] section)."""
    return f'cert_file = "{pki.web_cert}"\nkey_file = "{pki.web_key}"\n'


def https_get(url: str, context: ssl.SSLContext, headers: dict[str, str] | None = None,
              timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one GET, whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def opener(context: ssl.SSLContext, *handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), *handlers)


def start_served(product: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m <product> serve --config <config>`` with its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", product, "serve", "--config", str(config)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_https(url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes], log: Path,
               timeout: float = 120) -> None:
    """Until ``url`` answers over HTTPS (any status), or fail with the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            https_get(url, context, timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError):
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()}")


def stop_served(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM (the service manager's stop), then the exit status; SIGKILL only if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def power_cut(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and its worker processes at once, as a power cut would stop them."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    workers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    proc.kill()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str = "127.0.0.1") -> None:
    """One TLS handshake over the loopback between the two contexts; raises the client's error if it fails."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError), server.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=accept)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname()) as raw:
                client.wrap_socket(raw, server_hostname=hostname).close()
        finally:
            thread.join(10)
