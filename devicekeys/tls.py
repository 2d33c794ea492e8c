"""The TLS context a device or central uses to reach the broker with its fleet certificate.

paho's ``tls_set`` only takes file names, and Python's ``ssl`` loads a private key only from a
path. A TPM-sealed key is therefore unsealed into an anonymous in-memory file
(``memfd_create``) and loaded through ``/proc/self/fd``: the plaintext key never reaches a
filesystem, and the descriptor is closed once OpenSSL holds the key. A file-fallback key
(0600) is loaded straight from its file. The MQTT modules pass the result to
``client.tls_set_context``.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from devicekeys.errors import KeyProtectionError
from devicekeys.keys import private_key_pem


def client_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Verify the broker against the fleet CA (host name included) and present our certificate."""
    key_file = Path(key_file)
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if key_file.exists():
            context.load_cert_chain(str(cert_file), str(key_file))
            return context
        secret = private_key_pem(key_file)
        fd = os.memfd_create("rfr-client-key", os.MFD_CLOEXEC)
        try:
            os.write(fd, secret)
            context.load_cert_chain(str(cert_file), f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    except ssl.SSLError as e:
        raise KeyProtectionError(f"The certificate {cert_file} and key {key_file} do not load together: {e}") from e
    except FileNotFoundError as e:
        raise KeyProtectionError(f"TLS file {e.filename} does not exist: check the mqtt settings.") from e
    return context
