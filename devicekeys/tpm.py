"""Sealing small secrets to a TPM 2.0 with tpm2-tools (Debian ``tpm2-tools``).

A sealed object is created under the owner hierarchy's primary key; only its public and
encrypted private parts (``tpm2_create -u/-r``) are stored on disk, and they are useless off
this TPM. The primary key is re-derived from the TPM's seed on every use (same template, same
key), so nothing has to be made persistent in the TPM's few NV slots. The secret goes to and
comes from the tools through pipes, never through a file.

Which TPM: the ``tcti`` given, else ``TPM2TOOLS_TCTI``, else the kernel resource manager
``/dev/tpmrm0``. Transient objects are flushed after each tool runs because a TPM reached without a
resource manager (swtpm over TCP in tests) has only three transient slots.
Not done yet: binding to PCRs (measured boot) or an authorisation value.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from devicekeys.errors import KeyProtectionError
from devicekeys.files import write_private

_PRIMARY = ["tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb", "-c", "primary.ctx"]
_TIMEOUT_S = 60
DEVICE = Path("/dev/tpmrm0")


def find_tcti(tcti: str | None = None) -> str | None:
    """The TCTI string of the TPM to use, or None when this machine has none (or no tpm2-tools)."""
    if shutil.which("tpm2_createprimary") is None:
        return None
    if tcti:
        return tcti
    if os.environ.get("TPM2TOOLS_TCTI"):
        return os.environ["TPM2TOOLS_TCTI"]
    return f"device:{DEVICE}" if DEVICE.exists() else None


class Tpm:
    """One TPM, reached through tpm2-tools with a fixed TCTI."""

    def __init__(self, tcti: str) -> None:
        self.tcti = tcti
        self._env = {**os.environ, "TPM2TOOLS_TCTI": tcti}

    def _run(self, args: list[str], cwd: str, data: bytes | None = None) -> bytes:
        try:
            result = subprocess.run(args, cwd=cwd, input=data, env=self._env, capture_output=True,
                                    timeout=_TIMEOUT_S, check=False)
        except FileNotFoundError as e:
            raise KeyProtectionError(f"{args[0]} is not installed: install Debian's tpm2-tools.") from e
        except subprocess.TimeoutExpired as e:
            raise KeyProtectionError(f"The TPM at {self.tcti} did not answer {args[0]} within {_TIMEOUT_S} s.") from e
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit status {result.returncode}"
            raise KeyProtectionError(f"{args[0]} failed on TPM {self.tcti}: {reason}")
        return result.stdout

    def _step(self, args: list[str], cwd: str, data: bytes | None = None) -> bytes:
        """Run one tool, then free every transient object: each tool saves what it made to a context file
        and the next one loads it again, so without a flush the slots fill up after two steps."""
        try:
            return self._run(args, cwd, data)
        finally:
            # Behind a resource manager there is nothing left to free, and the tool may say so: not an error.
            with contextlib.suppress(KeyProtectionError):
                self._run(["tpm2_flushcontext", "-t"], cwd)

    def seal(self, secret: bytes, public: Path, private: Path) -> None:
        """Seal ``secret`` (at most 128 bytes: a key, not a file) into the two blob files."""
        if not 0 < len(secret) <= 128:
            raise KeyProtectionError(f"A TPM seals at most 128 bytes; this secret is {len(secret)}.")
        with tempfile.TemporaryDirectory(prefix="rfr-tpm-") as work:
            self._step(_PRIMARY, work)
            self._step(["tpm2_create", "-Q", "-C", "primary.ctx", "-i", "-", "-u", "sealed.pub", "-r", "sealed.priv"],
                       work, data=secret)
            write_private(public, Path(work, "sealed.pub").read_bytes())
            write_private(private, Path(work, "sealed.priv").read_bytes())

    def unseal(self, public: Path, private: Path) -> bytes:
        with tempfile.TemporaryDirectory(prefix="rfr-tpm-") as work:
            shutil.copyfile(public, Path(work, "sealed.pub"))
            shutil.copyfile(private, Path(work, "sealed.priv"))
            self._step(_PRIMARY, work)
            self._step(["tpm2_load", "-Q", "-C", "primary.ctx", "-u", "sealed.pub", "-r", "sealed.priv",
                        "-c", "sealed.ctx"], work)
            return self._step(["tpm2_unseal", "-c", "sealed.ctx"], work)
