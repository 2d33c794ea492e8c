"""Central and one desk served as their own processes, as a site runs them: the end-to-end test's and the
operations test's system, built one way.

``python -m central serve`` and ``python -m appliance serve`` (gunicorn over HTTPS with a fleet CA made by
``provisioning``, the desk's certificate issued at its enrolment), a real Mosquitto, and a library built by
central's own commands (``central.enrolment demo-import`` then ``enrol``). The desk is provisioned as a site
does it: its audit signing key and key-wrapping key are made on the desk and registered with central before
first start (central refuses audit messages from devices it has no key for), central wraps the library key
to the desk (which never sees the plain key file), and the desk applies central's authorisation manifest
for its library (a desk searches only libraries it is authorised to, #18).

The library is built once a session (:func:`enrol_demo_library`, the ``enrolled_library`` fixture in
``tests/conftest.py``) and each system gets its own copy of the files, so a test shares no state with
another; everything else (keys, databases, accounts, processes) is made afresh for each system.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import load as load_appliance_settings
from testbed.ports import free_port
from tests.appliance.http_desk import create_accounts
from tests.desk_authorisation import seed_authorisation
from tests.fleet_tls import FleetPki, desk_web_toml, start_served, stop_served, wait_https
from webserver.metrics import token_sha256

ROOT = Path(__file__).resolve().parents[1]
PRODUCTS = ("central", "appliance")
CENTRAL_SECRET = "kH3vQ9zR_tL2wX8bN5mP0cJ7fY4sD1gA6eU-iO3rT9k"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python <args>`` from the repository root; fails the test with its output unless it exits 0."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False,
                            input=stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@dataclass(frozen=True)
class EnrolledLibrary:
    """A library central's enrol command built, and its key file; copied, never used in place."""

    snapshot: Path
    key_file: Path

    def copy_to(self, folder: Path) -> EnrolledLibrary:
        folder.mkdir(parents=True, exist_ok=True)
        return EnrolledLibrary(Path(shutil.copy2(self.snapshot, folder / "lib.db")),
                               Path(shutil.copy2(self.key_file, folder / "lib.key")))


def enrol_demo_library(folder: Path) -> EnrolledLibrary:
    """The demo registry's photos, imported and enrolled by central's commands (about half of a system's setup)."""
    run("-m", "central.enrolment", "demo-import", "--out", str(folder / "import"))
    run("-m", "central.enrolment", "enrol", "--images", str(folder / "import" / "images"),
        "--csv", str(folder / "import" / "subjects.csv"),
        "--out", str(folder / "lib.db"), "--key-file", str(folder / "lib.key"))
    return EnrolledLibrary(folder / "lib.db", folder / "lib.key")


@dataclass(frozen=True)
class Metrics:
    """Each product's ``[metrics]`` scrape token (only its SHA-256 goes in the settings)."""

    central_token: str
    desk_token: str


@contextmanager
def served_system(tmp_path: Path, mosquitto, library: EnrolledLibrary, device_id: str, *,  # type: ignore[no-untyped-def]
                  metrics: Metrics | None = None, health_interval_s: int | None = None,
                  central_accounts: dict[str, tuple[str, str]] | None = None) -> Iterator[dict[str, object]]:
    """Both products serving; yields their base URLs, the fleet CA's trust, ``tmp`` (their folders), and their
    ``logs`` and ``procs``. ``central_accounts``: username to (role, password), made with ``central accounts
    add``. At the end each process still running is stopped, and every one must have exited 0."""
    lib = library.copy_to(tmp_path)
    central_port, desk_port = free_port(), free_port()
    pki = FleetPki.create(tmp_path / "fleet")
    desk_pki = pki.enrol(tmp_path / "appliance", device_id, web=True)
    # Central's fleet-command key signs its acks, outcomes and announcements; the desk is given the public half.
    command_key = tmp_path / "central-keys" / "fleet-command.pem"
    run("-m", "central", "devices", "command-key", "--out", str(command_key))
    wrapped = tmp_path / "appliance" / "pki" / "library.wrapped"
    (tmp_path / "central.toml").write_text(
        f'data_dir = "{tmp_path / "central"}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "central-{device_id}"\n'
        f'[web]\nport = {central_port}\nsecret_key = "{CENTRAL_SECRET}"\n'
        + pki.central_web_toml()
        + f'[fleet]\ncommand_key = "{command_key}"\n'
        + (f'[metrics]\ntoken_sha256 = "{token_sha256(metrics.central_token)}"\n' if metrics else ""))
    (tmp_path / "appliance.toml").write_text(
        f'device_id = "{device_id}"\ndata_dir = "{tmp_path / "appliance"}"\n'
        f'fleet_command_public_key = "{command_key}.pub"\n'
        f'[library]\npath = "{lib.snapshot}"\nwrapped_key = "{wrapped}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        + (f'[health]\ninterval_s = {health_interval_s}\n' if health_interval_s is not None else "")
        + (f'[metrics]\ntoken_sha256 = "{token_sha256(metrics.desk_token)}"\n' if metrics else "")
        + f'[web]\nport = {desk_port}\nsecret_key = "served-desk-secret-0123456789"\n' + desk_web_toml(desk_pki))
    from appliance.storage.signing_key import PUBLIC_NAME, load_or_create_signing_key

    load_or_create_signing_key(tmp_path / "appliance")
    # (the desk's keys, its key-wrapping key included, were made at its enrolment above: pki.enrol)
    run("-m", "central", "devices", "register", "--id", device_id,
        "--public-key", str(tmp_path / "appliance" / PUBLIC_NAME), "--config", str(tmp_path / "central.toml"),
        "--wrap-key", str(tmp_path / "appliance" / "pki" / "library-wrap.pub"))
    run("-m", "central", "devices", "wrap-library-key", "--id", device_id, "--key-file", str(lib.key_file),
        "--out", str(wrapped), "--config", str(tmp_path / "central.toml"))
    for username, (role, password) in (central_accounts or {}).items():
        run("-m", "central", "accounts", "add", "--config", str(tmp_path / "central.toml"), "--username", username,
            "--role", role, "--password-stdin", stdin=password + "\n")
    create_accounts(tmp_path / "appliance.toml", {"officer": "custody_officer", "inspector": "inspector"})
    seed_authorisation(load_appliance_settings(tmp_path / "appliance.toml"))
    logs = {name: tmp_path / f"{name}.log" for name in PRODUCTS}
    procs = {name: start_served(name, tmp_path / f"{name}.toml", logs[name]) for name in PRODUCTS}
    system: dict[str, object] = {"central": f"https://127.0.0.1:{central_port}",
                                 "appliance": f"https://127.0.0.1:{desk_port}", "trust": pki.trust(),
                                 "tmp": tmp_path, "logs": logs, "procs": procs}
    try:
        wait_https(f"{system['central']}/healthz", pki.trust(), procs["central"], logs["central"])
        wait_https(f"{system['appliance']}/login", pki.trust(), procs["appliance"], logs["appliance"])
        yield system
    finally:
        codes = {name: stop_served(proc) for name, proc in procs.items()}
        assert codes == {"central": 0, "appliance": 0}, {n: logs[n].read_text()[-3000:] for n in logs}
