"""Free TCP ports on the loopback address for the services a test or benchmark starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now; a service may still lose it to another process before it binds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
