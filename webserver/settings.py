"""The ``[web]`` settings both servers share: where to listen, the certificate, and gunicorn's bounds.

Each side's ``WebSettings`` extends this with what is its own (the desk's upload size, central's worker
count and client-certificate files). Every bound has a default a custody desk or central can live with;
the server refuses to start without a certificate (``webserver.server.check_tls``), since both UIs are
served over HTTPS only.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from core.settings import StrictModel


class ServedWebSettings(StrictModel):
    """Where the web interface listens, with what certificate, and the limits gunicorn enforces."""

    host: str = Field(default="127.0.0.1", description="Address to listen on (HTTPS only).")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTPS port; no plain-HTTP port is opened.")
    cert_file: Path | None = Field(default=None, description="The server certificate (PEM, leaf first, chain "
                                   "after): on a desk pki/web.crt from enrolment; on central its own or one "
                                   "`python -m provisioning server-cert` issued.")
    key_file: Path | None = Field(default=None, description="Its private key: a 0600 PEM file, or on a desk "
                                  "sealed to the TPM as web.key.tpm-pub/.tpm-priv (unsealed into memory only).")
    threads: int = Field(default=8, ge=1, le=64, description="Request threads per worker process: how many "
                         "requests are handled at once by each.")
    timeout_s: int = Field(default=120, ge=10, le=3600, description="A worker silent this long is killed and "
                           "replaced (a hung process, not a slow request: threads keep the worker answering).")
    graceful_timeout_s: int = Field(default=30, ge=1, le=600, description="On stop, requests in flight get this "
                                    "long to finish.")
    keepalive_s: int = Field(default=5, ge=0, le=300, description="An idle kept-alive connection is closed after "
                             "this long.")
    limit_request_line: int = Field(default=4094, ge=256, le=8190, description="Longest request line (method, "
                                    "path and query) in bytes; longer is refused with 400 before the app runs.")
    limit_request_fields: int = Field(default=50, ge=10, le=100, description="Most header fields in a request; "
                                      "more is refused with 400.")
    limit_request_field_size: int = Field(default=8190, ge=1024, le=16384, description="Largest header field "
                                          "in bytes; larger is refused with 400.")
    hsts_max_age_s: int = Field(default=31536000, ge=0, le=63072000, description="Strict-Transport-Security "
                                "max-age: browsers refuse plain HTTP to this host for this long.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> ServedWebSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together")
        return self
