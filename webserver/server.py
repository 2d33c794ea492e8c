"""gunicorn, started from Python with an app factory: how ``python -m appliance serve`` and ``python -m central
serve`` (and so ``scripts/run.sh``) serve their pages.

The TLS context is built once, in the master, before anything is bound: a missing, unreadable or mismatched
certificate stops the start with one line (``check_tls``), and a TPM-sealed key is unsealed once rather than
per connection. Each worker process then calls the factory itself (no preloading), so every worker opens its
own database connections, threads and MQTT links after the fork. Workers use gunicorn's ``gthread`` class:
a fixed number of threads per process, request-line and header limits, and timeouts from ``[web]``.

Only HTTPS is bound: a plain-HTTP request to the port fails the TLS handshake and gets no answer at all (no
redirect listener is opened, so there is no plain-HTTP page to strip or spoof). Every response carries HSTS.
The client certificate a peer presented (central asks for one, optionally) is put in the WSGI environ as
``SSL_CLIENT_CERT`` (PEM, the name Werkzeug, nginx and Apache use); whatever a client sends cannot set it.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from core.errors import CustodyRfrError, SettingsError
from devicekeys.tls import server_context
from webserver.gunicorn_log import ACCESS_FORMAT, json_logger
from webserver.settings import ServedWebSettings

logger = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
CLIENT_CERT = "SSL_CLIENT_CERT"


def check_tls(settings: ServedWebSettings, *, client_ca_file: Path | None = None,
              section: str = "web") -> ssl.SSLContext:
    """The server's TLS context, or a ``SettingsError`` in one line an operator can act on."""
    if settings.cert_file is None or settings.key_file is None:
        raise SettingsError(f"[{section}] cert_file and key_file are not set: the web interface is served over "
                            "HTTPS only (docs/fleet.md, 'Web certificates', says how to get them).")
    try:
        return server_context(settings.cert_file, settings.key_file, client_ca_file)
    except CustodyRfrError as e:
        raise SettingsError(f"[{section}] {e}") from e


class _Https:
    """WSGI wrapper: the peer's certificate into the environ, HSTS onto every response."""

    def __init__(self, app: WsgiApp, hsts_max_age_s: int) -> None:
        self.app = app
        self.hsts = ("Strict-Transport-Security", f"max-age={hsts_max_age_s}")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ.pop(CLIENT_CERT, None)
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, ssl.SSLSocket):
            der = sock.getpeercert(binary_form=True)
            if der:
                environ[CLIENT_CERT] = ssl.DER_cert_to_PEM_cert(der)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [h for h in headers if h[0].lower() != "strict-transport-security"] + [self.hsts]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class WebServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's application for one of our Flask apps; ``run()`` blocks until the server is stopped.

    ``factory`` runs in each worker; a ``CustodyRfrError`` from it stops the server with its message (a desk
    whose library does not open must not be restarted in a loop). ``on_worker_exit`` gets the app back when a
    worker stops, to close what it opened.
    """

    def __init__(self, factory: Callable[[], WsgiApp], settings: ServedWebSettings, context: ssl.SSLContext, *,
                 workers: int, name: str, on_worker_exit: Callable[[WsgiApp], None] | None = None) -> None:
        self._factory, self._settings, self._context = factory, settings, context
        self._workers, self._name, self._on_worker_exit = workers, name, on_worker_exit
        self._app: WsgiApp | None = None
        super().__init__()

    def load_config(self) -> None:
        s = self._settings
        assert s.cert_file is not None  # check_tls made sure
        context = self._context
        options: dict[str, Any] = {
            "bind": [f"{s.host}:{s.port}"],
            "workers": self._workers,
            "worker_class": "gthread",
            "threads": s.threads,
            "timeout": s.timeout_s,
            "graceful_timeout": s.graceful_timeout_s,
            "keepalive": s.keepalive_s,
            "limit_request_line": s.limit_request_line,
            "limit_request_fields": s.limit_request_fields,
            "limit_request_field_size": s.limit_request_field_size,
            # TLS from the context built in the master; certfile only marks the listener as TLS for gunicorn.
            "certfile": str(s.cert_file),
            "ssl_context": lambda _conf, _default: context,
            "preload_app": False,
            "control_socket_disable": True,  # no management socket beside the HTTPS port
            "proc_name": self._name,
            "accesslog": "-",
            "errorlog": "-",
            "logger_class": json_logger(self._name),  # JSON lines, one per request too (core.log_format)
            "access_log_format": ACCESS_FORMAT,
            "worker_exit": self._worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        try:
            self._app = self._factory()
        except CustodyRfrError as e:
            raise AppImportError(f"{self._name} cannot start: {e}") from e
        return _Https(self._app, self._settings.hsts_max_age_s)

    def _worker_exit(self, _server: object, _worker: object) -> None:
        if self._app is not None and self._on_worker_exit is not None:
            self._on_worker_exit(self._app)


def serve(factory: Callable[[], WsgiApp], settings: ServedWebSettings, context: ssl.SSLContext, *, workers: int,
          name: str, on_worker_exit: Callable[[WsgiApp], None] | None = None) -> int:
    """Serve until stopped (SIGTERM or SIGINT: requests in flight finish first); the master's exit status.

    gunicorn forks its workers from inside ``run()`` and ends them with ``sys.exit``, which would unwind
    through the caller's frames in the worker too: a worker leaves here with ``os._exit`` instead, so the
    caller's clean-up (central's ingest, its database connections) runs once, in the master.
    """
    master = os.getpid()
    code = 0
    try:
        WebServer(factory, settings, context, workers=workers, name=name, on_worker_exit=on_worker_exit).run()
    except SystemExit as e:  # gunicorn leaves through sys.exit, also on a clean stop
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if os.getpid() != master:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def https_url(settings: ServedWebSettings, path: str = "/") -> str:
    """The address to print for people: the host as configured, ``https`` always."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"https://{host}:{settings.port}{path}"

