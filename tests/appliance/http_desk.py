"""Drive a running appliance over real HTTP (urllib, cookies, CSRF), for tests that start it as a process.

tests/test_end_to_end.py uses this: since the desk workflow, a search needs a
signed-in officer, a submission and an Inspector's approval first. Accounts are
created beforehand with the device administrator's command (``create_accounts``).
"""

from __future__ import annotations

import http.cookiejar
import io
import re
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.appliance.desk_helpers import PASSWORD, SUBMISSION, authorisation_for

ROOT = Path(__file__).resolve().parents[2]


def create_accounts(config: Path, accounts: dict[str, str]) -> None:
    """``python -m appliance accounts add`` for each username -> role, password on stdin; the roles that search
    with a current authorisation to search (Authorised RFR Users)."""
    for username, role in accounts.items():
        auth = authorisation_for(role)
        extra = [] if auth is None else ["--trained-on", auth.trained_on.isoformat(), "--search-authorised-until",
                                         auth.authorised_until.isoformat(), "--business-area", auth.business_area]
        subprocess.run([sys.executable, "-m", "appliance", "accounts", "add", "--config", str(config),
                        "--username", username, "--role", role, "--password-stdin", *extra],
                       cwd=ROOT, input=PASSWORD + "\n", text=True, capture_output=True, check=True)


class HttpDesk:
    """One signed-in person with their own cookie jar."""

    def __init__(self, base: str, username: str, context: ssl.SSLContext | None = None) -> None:
        """``context``: the TLS trust for an ``https://`` desk (the fleet CA its web certificate is from)."""
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                                  urllib.request.HTTPCookieProcessor(self.cookies))
        page = self._open("/login")
        self._open("/login", {"username": username, "password": PASSWORD, "csrf_token": self._token(page)})
        self.token = self._token(self._open("/"))

    @staticmethod
    def _token(html: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, "page has no CSRF token (not signed in?)"
        return match.group(1)

    def _open(self, path: str, form: dict[str, object] | None = None) -> str:
        data = urllib.parse.urlencode(form, doseq=True).encode() if form is not None else None
        # A browser sends its page as Referer (same-origin policy); over HTTPS Flask-WTF checks it.
        request = urllib.request.Request(self.base + path, data=data, headers={"Referer": self.base + "/"})
        with self.opener.open(request) as response:
            self.url = response.geturl()
            return response.read().decode()

    def submit(self, **over: object) -> str:
        """Submit a request; returns the new case id."""
        self._open("/cases", {**SUBMISSION, **over, "csrf_token": self.token})
        return self.url.rsplit("/", 1)[1]

    def approve(self, case_id: str) -> None:
        self._open(f"/cases/{case_id}/approve", {"password": PASSWORD, "csrf_token": self.token})

    def search(self, case_id: str, photo: bytes) -> str:
        """Upload the photo, search, and return the candidates page."""
        boundary, body = encode_multipart({"probe": FileStorage(io.BytesIO(photo), filename="p.jpg"),
                                           "csrf_token": self.token})
        request = urllib.request.Request(f"{self.base}/cases/{case_id}/probe", data=body, method="POST", headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "HX-Request": "true",
            "Referer": self.base + "/"})
        self.opener.open(request).read()
        return self._open(f"/cases/{case_id}/search", {"csrf_token": self.token})
