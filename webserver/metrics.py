"""``/metrics`` for the force's Prometheus, on both web interfaces, behind a bearer token.

Why a bearer token and not a client certificate: Prometheus sends one from a file
(``authorization: {credentials_file: ...}``) over the HTTPS both servers already speak, the same scrape job
works for central and every desk, and rotating it is a settings change. A fleet client certificate would
have to be issued to the monitoring host from the fleet CA, and central's ``/tuf`` already reads client
certificates as "an enrolled desk". The settings hold only the token's SHA-256, so a copied settings file
does not give the token away; the presented token is hashed and compared in constant time.

The endpoint is WSGI middleware in front of the Flask app: it answers before sessions, sign-in redirects
and CSRF, and every other path goes through untouched. The registry is built per app by each product
(``appliance.web.metrics``, ``central.web.metrics``), from collectors that read state at scrape time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import Field

from core.settings import StrictModel

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
MAKE_TOKEN = ("python -c \"import hashlib, secrets; t = secrets.token_urlsafe(32); print(t); "
              "print(hashlib.sha256(t.encode()).hexdigest())\"")
#: What a label value may be: a code word, a device id or a model ref; no spaces, so no sentence or name.
LABEL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,79}")
REFUSED_BODY = b"Metrics need the scrape token: send Authorization: Bearer <token>.\n"


class MetricsSettings(StrictModel):
    """``[metrics]``: Prometheus scrapes ``/metrics`` with a bearer token; absent, ``/metrics`` is not served."""

    token_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the scrape token Prometheus sends as 'Authorization: Bearer <token>'. The "
        f"token is 32 random bytes kept in Prometheus's credentials_file; make both with {MAKE_TOKEN} (first "
        "line the token, second its SHA-256 for here).",
    )


def token_sha256(token: str) -> str:
    """The digest the settings hold for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


class MetricsEndpoint:
    """WSGI wrapper: ``GET /metrics`` with the right bearer token gets the registry's text; without it, 401."""

    def __init__(self, app: Callable[..., Iterable[bytes]], registry: CollectorRegistry,
                 settings: MetricsSettings) -> None:
        self.app = app
        self.registry = registry
        self._expected = bytes.fromhex(settings.token_sha256)

    def authorised(self, header: str | None) -> bool:
        """Whether ``header`` (the Authorization value) carries the token: hashed, then compared in constant
        time, so neither the token's length nor how much of it matched shows in the reply's timing."""
        scheme, _, token = (header or "").partition(" ")
        presented = hashlib.sha256(token.strip().encode()).digest()
        return hmac.compare_digest(presented, self._expected) and scheme.lower() == "bearer"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "GET":
            return _reply(start_response, "405 Method Not Allowed", b"Only GET.\n", [("Allow", "GET")])
        if not self.authorised(environ.get("HTTP_AUTHORIZATION")):
            logger.warning("metrics scrape refused: no valid bearer token", extra={"event": "metrics_refused"})
            return _reply(start_response, "401 Unauthorized", REFUSED_BODY,
                          [("WWW-Authenticate", 'Bearer realm="metrics"')])
        try:
            body = generate_latest(self.registry)
        except Exception:
            # A store that cannot be read is a scrape failure Prometheus records (up == 0), not a page of zeros.
            logger.exception("metrics could not be collected", extra={"event": "metrics_failed"})
            return _reply(start_response, "503 Service Unavailable", b"Metrics could not be collected.\n")
        return _reply(start_response, "200 OK", body, content_type=CONTENT_TYPE_LATEST)


def label_value(value: object) -> str:
    """A label value from a fixed vocabulary (an outcome, a reason code, a device id, a model ref), or
    ``other``: free text (a refusal's message, a name typed into a form) never becomes a label, so no
    personal identifier can reach the monitoring system through one."""
    text = str(value) if value is not None else "none"
    return text if LABEL_VALUE.fullmatch(text) else "other"


def reason_code(text: object) -> str:
    """A reason the code wrote (``wrong password``, ``expired_metadata``) as a label: lower case, words joined
    by ``_``; anything longer than a code word is ``other``. Only for text the software itself produced."""
    code = re.sub(r"[^a-z0-9]+", "_", str(text or "none").lower()).strip("_")
    return label_value(code) if 0 < len(code) <= 40 else "other"


def _reply(start_response: Callable[..., Any], status: str, body: bytes, headers: Iterable[tuple[str, str]] = (),
           content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), *headers])
    return [body]
