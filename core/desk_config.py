"""Signed desk configuration: accounts, thresholds and retention periods that central sets for every desk.

Central publishes the document as a TUF target in the library repository, so
a desk verifies it exactly like a library (signed by central's targets key,
fresh, not rolled back, length and hash as signed). This module is the one
definition both sides parse: central refuses to sign a document that does not
parse, and the desk refuses to apply one, so a mistake is caught before it
reaches a custody suite.

The document is the whole configuration, not a patch: the newest applied
version is what the desk runs with. Passwords travel only as scrypt hashes in
the device's own stored format (``scrypt$N$r$p$salt$hash``); the parameters
are bounded so central cannot ship a hash that is cheap to guess or one that
would exhaust the desk's memory at sign-in.

Safety rule: every document must keep at least one enabled ``device_admin``
account, so a configuration can never lock the force out of a desk.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core import passwords
from core.errors import WireFormatError

CONFIG_KIND = "config"
MAX_CONFIG_BYTES = 256 * 1024
MIN_PASSWORD_LENGTH = 12
# The roles the desk knows (appliance.services.policy.Role; a test keeps the two equal). A role a desk does
# not know is refused rather than guessed at.
ROLES = frozenset({"custody_officer", "detention_officer", "inspector", "superintendent", "technical_adviser",
                   "device_admin", "auditor"})
USERNAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# scrypt$N$r$p$salt$hash exactly as core.passwords.hash_password writes it (desk and central accounts).
PASSWORD_HASH = re.compile(r"^scrypt\$([0-9]{1,8})\$([0-9]{1,2})\$([0-9]{1,2})\$([0-9a-f]{32,128})\$([0-9a-f]{64})$")
SCRYPT_N = passwords.SCRYPT_N
MIN_SCRYPT_N = 2**14
MAX_SCRYPT_MEMORY = passwords.MAXMEM  # the desk's maxmem for verification
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """Hash ``password`` the way the desk stores it, so central can issue accounts without sending passwords."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WireFormatError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
    return passwords.hash_password(password, n)


def check_password_hash(value: str) -> str:
    """Refuse a hash the desk could not verify, or one too cheap to resist guessing if a copy leaks."""
    match = PASSWORD_HASH.fullmatch(value)
    if not match:
        raise ValueError("must be scrypt$N$r$p$salt-hex$hash-hex (use python -m central.publish hash-password)")
    n, r, p = (int(g) for g in match.groups()[:3])
    if n < MIN_SCRYPT_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 4 or 128 * n * r > MAX_SCRYPT_MEMORY:
        raise ValueError(f"scrypt parameters N={n}, r={r}, p={p} are outside what desks accept "
                         f"(N a power of two from {MIN_SCRYPT_N}, at most {MAX_SCRYPT_MEMORY // 2**20} MB)")
    return value


def config_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_target_name(version: int) -> str:
    """The one naming rule for configuration targets (never a library name, so neither is mistaken)."""
    return f"config-v{version:06d}.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ConfigAccount(_Strict):
    """One desk account; ``disabled`` stops sign-in but keeps the account and its audit history."""

    username: str = Field(pattern=USERNAME.pattern, description="1-64 letters, digits, dots, dashes, underscores.")
    role: str = Field(description=f"One of {sorted(ROLES)}.")
    password_hash: str = Field(description="From python -m central.publish hash-password; never a password.")
    disabled: bool = Field(default=False, description="True: the account can no longer sign in on any desk.")

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"unknown role {value!r}; roles are {', '.join(sorted(ROLES))}")
        return value

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        return check_password_hash(value)


class Thresholds(_Strict):
    """Settings the desk enforces as soon as the configuration is applied."""

    top_k: int = Field(ge=1, le=50, description="How many potential matches a search shows.")


class Retention(_Strict):
    """Retention periods, enforced on the desk: at start and hourly, every case closed with a viable match more
    than ``viable_match_days`` ago loses its probe image, face thumbnail and candidate list; the case record
    and the Match Report's text stay (appliance.services.retention, docs/desk-workflow.md)."""

    viable_match_days: int = Field(ge=1, le=3650, description="How long a viable match's probe image, "
                                   "thumbnail and candidate list are kept (the Match Report's text stays).")


class DeskConfig(_Strict):
    """The whole configuration of every desk; a newer version replaces the previous one."""

    version: int = Field(ge=1, description="Strictly increasing; a desk never applies an older or equal one.")
    issued_at: AwareDatetime = Field(description="When central issued it (ISO 8601 with a time zone).")
    accounts: list[ConfigAccount] = Field(min_length=1, max_length=1000)
    thresholds: Thresholds
    retention: Retention

    @model_validator(mode="after")
    def _safe(self) -> DeskConfig:
        names = [a.username for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError("an account is listed twice")
        if not any(a.role == "device_admin" and not a.disabled for a in self.accounts):
            raise ValueError("no enabled device_admin account: a desk would be left with nobody to administer it")
        return self

    @classmethod
    def parse(cls, data: bytes) -> DeskConfig:
        """Strictly parse a document; every problem is reported with its key path."""
        if len(data) > MAX_CONFIG_BYTES:
            raise WireFormatError(f"The configuration is {len(data)} bytes; the limit is {MAX_CONFIG_BYTES}.")
        try:
            return cls.model_validate_json(data)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
                                 for err in e.errors())
            raise WireFormatError(f"The configuration is not valid: {problems}.") from e

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class ConfigTargetInfo:
    """What central signs into a configuration target's ``custom`` metadata."""

    config_version: int
    digest: str
    kind: str = CONFIG_KIND

    def __post_init__(self) -> None:
        if self.kind != CONFIG_KIND:
            raise WireFormatError(f"A configuration target has kind {CONFIG_KIND!r}, not {self.kind!r}.")
        version = self.config_version
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise WireFormatError(f"Configuration version must be a positive integer, not {version!r}.")
        if not isinstance(self.digest, str) or not _DIGEST.fullmatch(self.digest):
            raise WireFormatError("Configuration digest must be sha256:<64 hex digits>.")

    @property
    def name(self) -> str:
        return config_target_name(self.config_version)

    @classmethod
    def of(cls, document: bytes) -> ConfigTargetInfo:
        """Describe a document from its own content (so a mistyped version cannot be signed)."""
        return cls(DeskConfig.parse(document).version, config_digest(document))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config_version": self.config_version, "digest": self.digest}

    @classmethod
    def from_dict(cls, data: object) -> ConfigTargetInfo:
        expected = {"kind", "config_version", "digest"}
        if not isinstance(data, dict) or set(data) != expected:
            raise WireFormatError(f"Configuration target metadata must have exactly {sorted(expected)}.")
        return cls(**data)


def is_config(custom: object) -> bool:
    """Whether a target's custom metadata claims to be a configuration (library logic skips these)."""
    return isinstance(custom, dict) and custom.get("kind") == CONFIG_KIND
