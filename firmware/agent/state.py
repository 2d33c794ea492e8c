"""The agent's state and the decisions made from it: pure, no I/O, every transition a new value.

``state.json`` is the commit point of every change of slot: the agent writes it
first and then moves the ``current`` link to match, and on every start it
makes the link match the file. So a crash between the two leaves the link on
the old complete slot, and the next run finishes the move.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from firmware.errors import FirmwareError, UpdateRefusedError
from firmware.version import Version

SLOTS = ("a", "b")


@dataclass(frozen=True)
class Offer:
    """A release the repository offers, from its signed custom metadata."""

    name: str
    version: Version
    min_from: Version | None


@dataclass(frozen=True)
class AgentState:
    """What is installed where; ``pending_confirm`` means the active version has not yet proved its first boot."""

    active: str | None = None
    version: str | None = None
    previous_slot: str | None = None
    previous_version: str | None = None
    pending_confirm: bool = False
    boot_attempts: int = 0
    switched_at: float | None = None
    failed_versions: tuple[str, ...] = field(default_factory=tuple)

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        doc["failed_versions"] = list(self.failed_versions)
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> AgentState:
        try:
            doc = json.loads(data)
            doc["failed_versions"] = tuple(doc.get("failed_versions", ()))
            state = cls(**doc)
        except (ValueError, TypeError) as e:
            raise FirmwareError(f"state.json is malformed ({e}); restore it or re-provision the desk.") from e
        if state.active not in (None, *SLOTS) or state.previous_slot not in (None, *SLOTS):
            raise FirmwareError(f"state.json names unknown slots {state.active!r}/{state.previous_slot!r}.")
        return state

    @property
    def installed(self) -> Version | None:
        return Version(self.version) if self.version else None

    @property
    def inactive(self) -> str:
        return "b" if self.active == "a" else "a"


def choose_offer(state: AgentState, offers: list[Offer]) -> Offer | None:
    """The newest offer the desk may install, None if it is up to date.

    Versions only move forward: an offer at or below the installed version is
    never chosen, and if every offer is older the repository is refused as a
    rollback. A version that already failed here is not retried; a release
    whose ``min_from`` is newer than the installed version needs an
    intermediate release first.
    """
    installed = state.installed
    if not offers:
        return None
    newest = max(o.version for o in offers)
    if installed is not None and newest < installed:
        raise UpdateRefusedError(
            "rollback", f"Central offers software version {newest} at most, older than the installed {installed}. "
                        f"Software never goes back a version; this desk keeps {installed}.")
    candidates = sorted((o for o in offers if installed is None or o.version > installed), key=lambda o: o.version,
                        reverse=True)
    for offer in candidates:
        if str(offer.version) in state.failed_versions:
            continue
        if offer.min_from is not None and installed is not None and installed < offer.min_from:
            continue
        return offer
    if candidates and all(str(o.version) in state.failed_versions for o in candidates):
        raise UpdateRefusedError(
            "failed_before", f"Version {candidates[0].version} already failed its health check or first boot on "
                             f"this desk; waiting for a newer release. This desk keeps {installed}.")
    if candidates:
        raise UpdateRefusedError(
            "needs_intermediate", f"Version {candidates[0].version} must be installed over {candidates[0].min_from} "
                                  f"or later; this desk has {installed}. Publish an intermediate release.")
    return None


def switched(state: AgentState, slot: str, version: Version, now: float) -> AgentState:
    """The state after a healthy slot became active; it stays pending until the first boot is confirmed."""
    return replace(state, active=slot, version=str(version), previous_slot=state.active,
                   previous_version=state.version, pending_confirm=True, boot_attempts=0, switched_at=now)


def confirmed(state: AgentState) -> AgentState:
    return replace(state, pending_confirm=False, boot_attempts=0)


def booted(state: AgentState) -> AgentState:
    """Count one start of a pending version (ExecStartPre of the appliance unit)."""
    return replace(state, boot_attempts=state.boot_attempts + 1) if state.pending_confirm else state


def rollback_due(state: AgentState, now: float, *, max_boot_attempts: int, confirm_timeout_s: float) -> str | None:
    """Why the pending version must be rolled back, or None."""
    if not state.pending_confirm or state.previous_slot is None:
        return None
    if state.boot_attempts > max_boot_attempts:
        return f"it started {state.boot_attempts - 1} times without confirming"
    if state.switched_at is not None and now - state.switched_at > confirm_timeout_s:
        return f"it did not confirm its first boot within {confirm_timeout_s:.0f} s"
    return None


def rolled_back(state: AgentState) -> AgentState:
    """Back to the previous slot; the failed version is remembered so it is not installed again."""
    if state.previous_slot is None or state.previous_version is None:
        raise FirmwareError("There is no previous version to roll back to.")
    return AgentState(active=state.previous_slot, version=state.previous_version,
                      failed_versions=(*state.failed_versions, str(state.version)))


def forgot_previous(state: AgentState) -> AgentState:
    """Before the inactive slot is overwritten it can no longer be a rollback target."""
    return replace(state, previous_slot=None, previous_version=None)


def health_failed(state: AgentState, version: Version) -> AgentState:
    return replace(state, failed_versions=(*state.failed_versions, str(version)))
