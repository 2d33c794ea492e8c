"""Sealing small secrets to a TPM 2.0 with tpm2-tools (Debian ``tpm2-tools``).

A sealed object is created under the owner hierarchy's primary key; only its public and
encrypted private parts (``tpm2_create -u/-r``) are stored on disk, and they are useless off
this TPM. The primary key is re-derived from the TPM's seed on every use (same template, same
key), so nothing has to be made persistent in the TPM's few NV slots. The secret goes to and
comes from the tools through pipes, never through a file.

Which TPM: the ``tcti`` given, else ``TPM2TOOLS_TCTI``, else the kernel resource manager
``/dev/tpmrm0``. Transient objects are flushed after each tool runs because a TPM reached without a
resource manager (swtpm over TCP in tests) has only three transient slots.

A sealed object is bound by a policy (``SealPolicy``): PolicyPCR over the PCRs named (default
``sha256:7``, the Secure Boot state: another bootloader or a changed boot policy extends it
differently and the object no longer unseals) AND PolicyAuthValue, an authorisation value derived
from a per-device secret file (0600, in the desk's data folder) that the TPM checks as well. The
object has no ``userwithauth``, so the authorisation value alone never opens it. tpm2-tools takes an
authorisation value with a policy session only on its command line (``session:ctx+hex:..``), so it
is briefly visible in ``/proc`` to other local users; desk images mount ``/proc`` with ``hidepid``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devicekeys.errors import KeyProtectionError
from devicekeys.files import write_private

_PRIMARY = ["tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb", "-c", "primary.ctx"]
_TIMEOUT_S = 60
DEVICE = Path("/dev/tpmrm0")
#: Secure Boot state (UEFI variables and the boot authority): what a desk's measured boot pins by default.
DEFAULT_PCRS = "sha256:7"
_ATTRIBUTES = "fixedtpm|fixedparent|noda"  # no userwithauth: only the policy opens it
_AUTH_CONTEXT = b"rfr-tpm-auth-v1\0"


@dataclass(frozen=True)
class SealPolicy:
    """What a sealed object demands before it unseals: PCR values and/or the device's authorisation value.

    ``auth_file`` holds the per-device secret the authorisation value is derived from; it is recorded with
    each sealed key (``devicekeys.keys``), so any process that unseals knows which file to use.
    """

    pcrs: str | None = DEFAULT_PCRS
    auth_file: Path | None = None

    @property
    def empty(self) -> bool:
        return self.pcrs is None and self.auth_file is None

    def auth_hex(self) -> str:
        """The authorisation value (32 bytes, hex) derived from the device's auth file."""
        if self.auth_file is None:
            raise KeyProtectionError("This sealed key needs no authorisation value.")
        try:
            secret = Path(self.auth_file).read_bytes()
        except OSError as e:
            raise KeyProtectionError(f"The TPM authorisation file {self.auth_file} cannot be read ({e.strerror}): "
                                     "the keys sealed with it stay closed. Restore it from the desk's data folder "
                                     "or re-provision the desk.") from e
        if len(secret) < 32:
            raise KeyProtectionError(f"The TPM authorisation file {self.auth_file} is damaged (too short).")
        return hashlib.sha256(_AUTH_CONTEXT + secret).hexdigest()


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
    """One TPM, reached through tpm2-tools with a fixed TCTI; new secrets are sealed under ``policy``."""

    def __init__(self, tcti: str, policy: SealPolicy | None = None) -> None:
        self.tcti = tcti
        self.policy = policy or SealPolicy()
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
            # The TPM's own response code ("tpm:session(1):authorization failure ...") says more than the last line.
            codes = [line for line in detail if "tpm:" in line]
            reason = (codes or detail or [f"exit status {result.returncode}"])[-1]
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

    def _policy_session(self, work: str, policy: SealPolicy, *, trial: bool) -> str:
        """Start a session and run the policy's assertions in it; returns the session file's name.

        A trial session computes the policy digest the object is created with; a real one satisfies it.
        """
        args = ["tpm2_startauthsession", "-S", "session.ctx"] + ([] if trial else ["--policy-session"])
        self._run(args, work)
        if policy.pcrs is not None:
            self._run(["tpm2_policypcr", "-Q", "-S", "session.ctx", "-l", policy.pcrs, "-L", "policy.digest"], work)
        if policy.auth_file is not None:
            self._run(["tpm2_policyauthvalue", "-Q", "-S", "session.ctx", "-L", "policy.digest"], work)
        return "session.ctx"

    def _flush_session(self, work: str) -> None:
        with contextlib.suppress(KeyProtectionError):
            self._run(["tpm2_flushcontext", "session.ctx"], work)

    def seal(self, secret: bytes, public: Path, private: Path) -> SealPolicy:
        """Seal ``secret`` (at most 128 bytes: a key, not a file) into the two blob files under ``self.policy``;
        returns the policy, which the caller records beside the blobs."""
        if not 0 < len(secret) <= 128:
            raise KeyProtectionError(f"A TPM seals at most 128 bytes; this secret is {len(secret)}.")
        policy = self.policy
        with tempfile.TemporaryDirectory(prefix="rfr-tpm-") as work:
            create = ["tpm2_create", "-Q", "-C", "primary.ctx", "-i", "-", "-u", "sealed.pub", "-r", "sealed.priv"]
            if not policy.empty:
                try:
                    self._policy_session(work, policy, trial=True)
                finally:
                    self._flush_session(work)
                create += ["-L", "policy.digest", "-a", _ATTRIBUTES]
                if policy.auth_file is not None:
                    create += ["-p", f"hex:{policy.auth_hex()}"]
            self._step(_PRIMARY, work)
            self._step(create, work, data=secret)
            write_private(public, Path(work, "sealed.pub").read_bytes())
            write_private(private, Path(work, "sealed.priv").read_bytes())
        return policy

    def unseal(self, public: Path, private: Path, policy: SealPolicy | None = None) -> bytes:
        """The sealed secret; ``policy`` is the one it was sealed under (None: a key sealed before policies)."""
        with tempfile.TemporaryDirectory(prefix="rfr-tpm-") as work:
            shutil.copyfile(public, Path(work, "sealed.pub"))
            shutil.copyfile(private, Path(work, "sealed.priv"))
            self._step(_PRIMARY, work)
            self._step(["tpm2_load", "-Q", "-C", "primary.ctx", "-u", "sealed.pub", "-r", "sealed.priv",
                        "-c", "sealed.ctx"], work)
            if policy is None or policy.empty:
                return self._step(["tpm2_unseal", "-c", "sealed.ctx"], work)
            try:
                session = self._policy_session(work, policy, trial=False)
                auth = f"session:{session}" + (f"+hex:{policy.auth_hex()}" if policy.auth_file is not None else "")
                try:
                    return self._step(["tpm2_unseal", "-c", "sealed.ctx", "-p", auth], work)
                except KeyProtectionError as e:
                    raise KeyProtectionError(
                        f"The TPM refused to unseal {public.name.removesuffix('.tpm-pub')}: {_why(e, policy)}") from e
            finally:
                self._flush_session(work)


def _why(error: KeyProtectionError, policy: SealPolicy) -> str:
    """Which part of the policy failed, in words a technician can act on."""
    text = str(error)
    if "policy" in text.lower() or "pcr" in text.lower():
        return (f"the desk's measured boot state (PCR {policy.pcrs}) is not what it was when the key was sealed "
                f"(another bootloader or boot configuration?). Restore the desk's boot configuration or "
                f"re-provision the desk. ({text})")
    if "authorization" in text.lower() or "auth" in text.lower():
        return (f"the authorisation value derived from {policy.auth_file} is wrong (the file was replaced?). "
                f"Restore the file or re-provision the desk. ({text})")
    return text
