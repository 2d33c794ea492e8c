"""Fixtures for fleet provisioning: a fleet CA in a temp dir, a TLS Mosquitto, a software TPM."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devicekeys.tpm import Tpm
from provisioning.ca import init_ca
from testbed.ports import free_port
from testbed.processes import stop_process
from tests.provisioning.fleet import TlsBroker


def _free_port_pair() -> int:
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free neighbouring ports for swtpm")


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return init_ca(tmp_path / "ca", organisation="Test Constabulary", broker_names=["127.0.0.1", "localhost"]).ca_dir


@pytest.fixture(scope="module")
def fleet_broker() -> Iterator[TlsBroker]:
    """One fleet CA and one broker started from its generated configuration, per test module.

    The directories are world-readable so the ``mosquitto`` user (the broker drops root) reaches them.
    """
    root = Path(tempfile.mkdtemp(prefix="rfr-fleet-"))
    os.chmod(root, 0o755)
    ca = init_ca(root / "ca", organisation="Test Constabulary", broker_names=["127.0.0.1"]).ca_dir
    server = TlsBroker(ca, root / "broker")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_swtpm() -> Iterator[Tpm]:
    """A software TPM 2.0 (Debian swtpm) with fresh state on free TCP ports, reached through tpm2-tools' swtpm TCTI."""
    if shutil.which("swtpm") is None or shutil.which("tpm2_createprimary") is None:
        pytest.skip("swtpm and tpm2-tools are not installed (scripts/setup.sh installs swtpm swtpm-tools tpm2-tools)")
    state = Path(tempfile.mkdtemp(prefix="rfr-swtpm-"))
    port = _free_port_pair()
    process = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                                "--server", f"type=tcp,port={port}", "--ctrl", f"type=tcp,port={port + 1}",
                                "--flags", "not-need-init,startup-clear"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The swtpm TCTI expects the control channel on the next port.
    tpm = Tpm(f"swtpm:host=127.0.0.1,port={port}")
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["tpm2_getrandom", "-T", tpm.tcti, "4"], capture_output=True, check=False).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"swtpm did not start on {port}")
            time.sleep(0.1)
        yield tpm
    finally:
        stop_process(process)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def swtpm() -> Iterator[Tpm]:
    with running_swtpm() as tpm:
        yield tpm
