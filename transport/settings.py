"""The one settings section for reaching the broker, shared by the desk and central.

Each side extends it with what is its own (the desk's defaults and keep-alive, central's client id
and session expiry), so the broker address and the mutual-TLS rule are written once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from core.settings import StrictModel


class MqttSettings(StrictModel):
    """Where the broker is, and the certificate this client proves itself with."""

    host: str = Field(description="Broker host name or address.")
    port: int = Field(ge=1, le=65535, description="Broker TCP port.")
    # Mutual TLS with the fleet PKI (python -m provisioning prints these). All three or none:
    # none keeps plain TCP, for the loopback development broker only.
    ca_file: Path | None = Field(default=None, description="The fleet CA bundle (ca.pem) the broker must chain to.")
    cert_file: Path | None = Field(default=None, description="This client's certificate (a desk's pki/device.crt, "
                                   "central's central/central.crt).")
    key_file: Path | None = Field(default=None, description="This client's private key: a 0600 file, or on a desk "
                                  "sealed to the TPM as device.key.tpm-pub/.tpm-priv.")

    @model_validator(mode="after")
    def _tls_all_or_none(self) -> MqttSettings:
        given = [f for f in ("ca_file", "cert_file", "key_file") if getattr(self, f) is not None]
        if given and len(given) != 3:
            raise ValueError("give ca_file, cert_file and key_file together (or none for plain TCP)")
        return self
