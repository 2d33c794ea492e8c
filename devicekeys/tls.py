"""The TLS contexts made with a fleet certificate: a client's (broker, central's /tuf) and a web server's.

paho's ``tls_set`` only takes file names, and Python's ``ssl`` loads a private key only from a
path. A TPM-sealed key is therefore unsealed into an anonymous in-memory file
(``memfd_create``) and loaded through ``/proc/self/fd``: the plaintext key never reaches a
filesystem, and the descriptor is closed once OpenSSL holds the key. A file-fallback key
(0600) is loaded straight from its file. The MQTT modules pass the result to
``client.tls_set_context``; the desk's update fetcher and the web servers use it as it is.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from devicekeys.errors import KeyProtectionError
from devicekeys.keys import private_key_pem


def _load_identity(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Load our certificate and key into ``context``: from the file, or unsealed into memory only."""
    key_file = Path(key_file)
    if key_file.exists():
        context.load_cert_chain(str(cert_file), str(key_file))
        return
    secret = private_key_pem(key_file)
    fd = os.memfd_create("rfr-tls-key", os.MFD_CLOEXEC)
    try:
        os.write(fd, secret)
        context.load_cert_chain(str(cert_file), f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def client_context(ca_file: Path | None, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Verify the server against the fleet CA (host name included; the system's CAs without ``ca_file``) and
    present our certificate."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_identity(context, cert_file, key_file)
    except ssl.SSLError as e:
        raise KeyProtectionError(f"The certificate {cert_file} and key {key_file} do not load together: {e}") from e
    except FileNotFoundError as e:
        raise KeyProtectionError(f"TLS file {e.filename} does not exist: check the settings.") from e
    return context


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> ssl.SSLContext:
    """A web server's context: TLS 1.2 or later, our certificate, and (with ``client_ca_file``) a request for
    a client certificate from that CA. The request is optional, so staff browsers without one still connect;
    a certificate that is offered must verify, and the application decides which pages need one."""
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_identity(context, cert_file, key_file)
    except ssl.SSLError as e:
        raise KeyProtectionError(f"The web server's certificate {cert_file} and key {key_file} do not load "
                                 f"together ({e.reason or e}); give the key the certificate was issued for.") from e
    except FileNotFoundError as e:
        raise KeyProtectionError(f"TLS file {e.filename} does not exist: check the [web] settings.") from e
    if client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca_file))
        except (ssl.SSLError, OSError) as e:
            raise KeyProtectionError(f"The client CA file {client_ca_file} cannot be read as PEM certificates "
                                     f"({e}); give the fleet CA bundle (ca.pem).") from e
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
