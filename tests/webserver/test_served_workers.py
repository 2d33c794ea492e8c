"""``python -m central serve`` on several workers: two gunicorn web workers and two ingest worker processes.

The web's sessions are shared through PostgreSQL (``websession``): ``python -m central serve`` over real
HTTPS with ``[web] workers = 2`` and ``[ingest] workers = 2`` on a PostgreSQL database. Which
worker answers is forced by pausing the other (SIGSTOP: it accepts nothing, so the shared listening socket
hands every new connection to the one running). A session made by signing in through one worker is
honoured by the other, its CSRF token too; the idle clock one worker moves forward counts for the other;
a session idle too long is refused by whichever worker sees it; and signing out through one ends the session
for both, even for a copied cookie. Beside gunicorn (whose master reaps every child that ends), an ingest
worker killed with SIGKILL is still seen to die and is started again, and ``/healthz`` reports the ingest
connected once it is back.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from central.publish.repository import init_repository
from testbed.ports import free_port
from tests.fleet_tls import ROOT, FleetPki, start_served, stop_served, wait_https

PASSWORD = "a-long-central-password-1"


@dataclass
class Browser:
    """One browser over HTTPS: a new connection per request (so any worker may take it), cookies kept."""

    port: int
    pki: FleetPki
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.pki.trust(), timeout=20)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = headers["Referer"] = f"https://127.0.0.1:{self.port}"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                value = rest.split(";", 1)[0]
                if value and "Max-Age=0" not in header and "1970" not in header:
                    self.cookies[name] = value
                else:
                    self.cookies.pop(name, None)
            return response.status, response.headers.get("Location", ""), response.read().decode()
        finally:
            conn.close()

    def csrf(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200, (status, page[:300])
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page[:500]
        return found.group(1)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    pki: FleetPki
    url: str
    log: Path

    def _children(self) -> list[tuple[int, bytes]]:
        # Every thread's children: the ingest supervisor's thread starts the replacements.
        children = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += (task / "children").read_text().split()
        out = []
        for pid in children:
            with contextlib.suppress(OSError):
                out.append((int(pid), Path(f"/proc/{pid}/cmdline").read_bytes()))
        return out

    def web_workers(self) -> list[int]:
        """gunicorn's worker processes: the children of central's process that multiprocessing did not start."""
        return sorted(pid for pid, cmdline in self._children() if b"multiprocessing" not in cmdline)

    def ingest_workers(self) -> list[int]:
        """The ingest worker processes (spawned by ``central.ingest.processes``)."""
        return sorted(pid for pid, cmdline in self._children()
                      if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline)


@contextlib.contextmanager
def only(served: Served, worker: int) -> Iterator[None]:
    """Every new connection goes to ``worker``: the other one is paused meanwhile."""
    paused = [pid for pid in served.web_workers() if pid != worker]
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def served(tmp_path_factory, mosquitto, postgres) -> Iterator[tuple[Served, str]]:
    root = tmp_path_factory.mktemp("sessions-across-workers")
    pki = FleetPki.create(root)
    repo = init_repository(root / "repo", root / "offline-root-keys")
    port = free_port()
    url = postgres.create_database()
    config = pki.central_config(root, mosquitto, port, repo.repo_dir, f"central-sessions-{os.getpid()}")
    text = config.read_text().replace("[mqtt]", f'database = "{url}"\n[mqtt]', 1)
    config.write_text(text + f'[ingest]\nworkers = 2\nshared_group = "served{os.getpid()}"\n')
    added = subprocess.run([sys.executable, "-m", "central", "accounts", "add", "--config", str(config),
                            "--username", "auditor1", "--role", "auditor", "--password-stdin"],
                           input=PASSWORD + "\n", cwd=ROOT, capture_output=True, text=True, check=False)
    assert added.returncode == 0, added.stderr
    log = root / "central.log"
    proc = start_served("central", config, log)
    s = Served(proc, port, pki, f"https://127.0.0.1:{port}", log)
    try:
        wait_https(s.url + "/healthz", pki.trust(), proc, log)
        deadline = time.monotonic() + 30
        while len(s.web_workers()) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(s.web_workers()) == 2, log.read_text()
        assert len(s.ingest_workers()) == 2, log.read_text()
        yield s, url
    finally:
        assert stop_served(proc) == 0, log.read_text()


def _signed_in_through(served: Served, worker: int) -> Browser:
    browser = Browser(served.port, served.pki)
    with only(served, worker):
        token = browser.csrf("/login")
        status, location, _ = browser.request("POST", "/login", {"csrf_token": token, "username": "auditor1",
                                                                 "password": PASSWORD})
    assert status == 302 and "/login" not in location, (status, location)
    assert "rfr_central_session" in browser.cookies
    return browser


def _honoured(browser: Browser) -> bool:
    status, location, _ = browser.request("GET", "/audit")
    assert status in (200, 302), status
    return status == 200 and not location


def _backdate(url: str, seconds: float) -> None:
    """Make every session look unused for ``seconds`` (the idle clock is the row's last_seen)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE central_sessions SET last_seen = %s", (time.time() - seconds,))


def test_a_session_made_through_one_worker_is_honoured_by_the_other(served) -> None:
    s, _url = served
    first, second = s.web_workers()
    browser = _signed_in_through(s, first)
    with only(s, second):
        assert _honoured(browser)
    with only(s, first):
        assert _honoured(browser)


def test_signing_out_through_one_worker_ends_the_session_for_the_other(served) -> None:
    s, _url = served
    first, second = s.web_workers()
    browser = _signed_in_through(s, first)
    copied = Browser(s.port, s.pki, dict(browser.cookies))
    with only(s, second):
        token = browser.csrf("/audit")  # the session's CSRF token, as the second worker reads it from the row
    with only(s, first):
        status, location, _ = browser.request("POST", "/logout", {"csrf_token": token})
        assert status == 302 and location.endswith("/login")
    with only(s, second):
        assert not _honoured(copied)  # a cookie copied before the sign-out opens nothing on the other worker
    with only(s, first):
        assert not _honoured(copied)


def test_the_idle_timeout_is_kept_in_the_database_for_both_workers(served) -> None:
    s, url = served
    first, second = s.web_workers()
    browser = _signed_in_through(s, first)
    _backdate(url, 29 * 60)  # 29 of the 30 idle minutes gone
    with only(s, second):
        assert _honoured(browser)  # still in time; the second worker moves the idle clock on
    with psycopg.connect(url, autocommit=True) as db:
        last_seen = db.execute("SELECT MAX(last_seen) FROM central_sessions").fetchone()
    assert last_seen is not None and time.time() - float(last_seen[0]) < 60
    with only(s, first):
        assert _honoured(browser)  # and the first sees the clock the second moved
    _backdate(url, 31 * 60)
    with only(s, first):
        assert not _honoured(browser)  # idle too long: refused, whichever worker it reaches
    with only(s, second):
        assert not _honoured(browser)


def test_an_ingest_worker_killed_beside_gunicorn_is_started_again(served) -> None:
    s, _url = served
    victim = s.ingest_workers()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(s.ingest_workers()) != 2 or victim in s.ingest_workers()):
        time.sleep(0.2)
    assert len(s.ingest_workers()) == 2 and victim not in s.ingest_workers(), s.log.read_text()
    assert '"event":"ingest_worker_died"' in s.log.read_text()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _healthy(s):
        time.sleep(0.3)
    assert _healthy(s), s.log.read_text()


def _healthy(s: Served) -> bool:
    conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=s.pki.trust(), timeout=10)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status == 200 and b'"ok"' in response.read()
    finally:
        conn.close()
