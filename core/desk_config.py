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

Authorised RFR Users: an account whose role runs searches carries a
``search_authorisation`` (training date, the day the authorisation ends, the
business area granted permission). The desk refuses a submission or a search
without a current one (``appliance.services.search_authority``). Dates are
strict ``YYYY-MM-DD`` and bounded, so a typed year (2205 for 2025) is refused
here, at central, rather than silently authorising someone for two centuries.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
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
# The roles that submit requests and run searches (appliance.services.policy's desk roles; a test keeps the two
# equal): only they need, and only they may carry, an authorisation to search.
SEARCH_ROLES = frozenset({"custody_officer", "detention_officer", "inspector", "superintendent"})
# Bounds on an authorisation's dates: a date outside them, or one lasting longer than this after the training,
# is a typing mistake, not a policy.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
MAX_AUTHORISATION = timedelta(days=5 * 366)
# Letters, digits, spaces and ordinary punctuation: a name people read, never markup or control characters.
BUSINESS_AREA = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 &'(),./:-]{0,78}[A-Za-z0-9).])?$")
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


class SearchAuthorisation(_Strict):
    """An Authorised RFR User's authorisation: trained on ``trained_on``, in ``business_area`` (a business area
    granted permission to use RFR), may start requests and searches up to and including ``authorised_until``."""

    trained_on: date = Field(description="The day the officer completed RFR training (YYYY-MM-DD).")
    authorised_until: date = Field(description="The last day the officer may search (YYYY-MM-DD), after the "
                                   "training and at most five years after it.")
    business_area: str = Field(pattern=BUSINESS_AREA.pattern, description="The business area granted permission, "
                               "e.g. 'Custody, North division' (1-80 letters, digits, spaces, punctuation).")

    @field_validator("trained_on", "authorised_until")
    @classmethod
    def _bounded(cls, value: date) -> date:
        if not EARLIEST_DATE <= value <= LATEST_DATE:
            raise ValueError(f"{value.isoformat()} is outside {EARLIEST_DATE.isoformat()} to "
                             f"{LATEST_DATE.isoformat()}: check the year")
        return value

    @model_validator(mode="after")
    def _after_training(self) -> SearchAuthorisation:
        if self.authorised_until <= self.trained_on:
            raise ValueError(f"authorised_until {self.authorised_until.isoformat()} must be after trained_on "
                             f"{self.trained_on.isoformat()}")
        if self.authorised_until - self.trained_on > MAX_AUTHORISATION:
            raise ValueError(f"authorised_until {self.authorised_until.isoformat()} is more than five years after "
                             f"trained_on {self.trained_on.isoformat()}: check the year")
        return self


class ConfigAccount(_Strict):
    """One desk account; ``disabled`` stops sign-in but keeps the account and its audit history."""

    username: str = Field(pattern=USERNAME.pattern, description="1-64 letters, digits, dots, dashes, underscores.")
    role: str = Field(description=f"One of {sorted(ROLES)}.")
    password_hash: str = Field(description="From python -m central.publish hash-password; never a password.")
    disabled: bool = Field(default=False, description="True: the account can no longer sign in on any desk.")
    search_authorisation: SearchAuthorisation | None = Field(
        default=None, description=f"Roles {sorted(SEARCH_ROLES)} only: the account's authorisation to search. "
        "Without a current one the account signs in and sees its cases but cannot start a request or a search.")

    @model_validator(mode="after")
    def _authorisation_for_searchers(self) -> ConfigAccount:
        if self.search_authorisation is not None and self.role not in SEARCH_ROLES:
            raise ValueError(f"a {self.role} does not search, so carries no search_authorisation "
                             f"(only {', '.join(sorted(SEARCH_ROLES))} do)")
        return self

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
        # A day's grace for time zones: central issues in UTC, training dates are local.
        issued = self.issued_at.date() + timedelta(days=1)
        for account in self.accounts:
            auth = account.search_authorisation
            if auth is not None and auth.trained_on > issued:
                raise ValueError(f"{account.username}: trained_on {auth.trained_on.isoformat()} is after the "
                                 f"configuration was issued ({self.issued_at.date().isoformat()})")
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
