"""The update agent: one verified release at a time into the inactive slot, then an atomic switch.

``check``: recover from any interrupted run, roll back a pending version that
missed its deadline, ask the release repository (TUF) for the newest
acceptable version, verify and unpack it into the inactive slot, build its
venv, health-check it, commit ``state.json`` and move the ``current`` link.
The new version is pending until ``confirm`` (the appliance unit's
ExecStartPost); ``boot`` (its ExecStartPre) counts starts, and too many starts
or too long without confirmation bring back the previous slot.

Power loss at any point leaves ``current`` on a complete slot: the link only
ever moves to a slot whose ``slot.json`` exists, and ``state.json`` is written
before the link moves, so a later run completes or repeats the move.
``on_stage`` is a test seam called with each step's name.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from firmware.agent import slots
from firmware.agent.client import ReleaseClient
from firmware.agent.config import AgentConfig
from firmware.agent.state import (
    AgentState,
    booted,
    choose_offer,
    confirmed,
    forgot_previous,
    health_failed,
    rollback_due,
    rolled_back,
    switched,
)
from firmware.bundle import extract_bundle
from firmware.errors import FirmwareError, HealthCheckError, SlotError, UpdateRefusedError
from firmware.fsutil import atomic_symlink, atomic_write
from firmware.version import Version

logger = logging.getLogger(__name__)

StageHook = Callable[[str], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class AgentResult:
    """What one command did; ``version`` is what the desk runs afterwards."""

    outcome: str  # installed, up_to_date, refused, unhealthy, rolled_back, confirmed, pending, unavailable
    version: str | None
    message: str
    reason: str | None = None


class UpdateAgent:
    """The slots, link and state under ``config.state_dir``; every public method holds the agent lock."""

    def __init__(self, config: AgentConfig, *, on_stage: StageHook | None = None, clock: Clock = time.time) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.current_link = self.state_dir / "current"
        self.state_file = self.state_dir / "state.json"
        self._stage = on_stage or (lambda _name: None)
        self._clock = clock

    # --- state and link -------------------------------------------------------------------------

    def read_state(self) -> AgentState:
        try:
            return AgentState.from_bytes(self.state_file.read_bytes())
        except FileNotFoundError:
            return AgentState()

    def _commit(self, state: AgentState) -> None:
        atomic_write(self.state_file, state.to_bytes())

    def _point_link(self, state: AgentState) -> None:
        if state.active is None:
            return
        target = f"slots/{state.active}"
        now = os.readlink(self.current_link) if self.current_link.is_symlink() else None
        if now != target:
            atomic_symlink(self.current_link, target)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One agent at a time (timer, ExecStartPre, ExecStartPost); the kernel drops the lock on kill -9."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "agent.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _recover(self) -> tuple[AgentState, AgentResult | None]:
        """Make the link match state.json, and roll back a pending version that has run out of chances."""
        state = self.read_state()
        if state.active is None:
            return state, None
        if slots.slot_version(self.state_dir, state.active) != state.installed:
            if state.previous_slot and slots.slot_version(self.state_dir, state.previous_slot) is not None:
                return self._rollback(state, f"slot {state.active} is damaged")
            raise SlotError(f"Slot {state.active} (version {state.version}) is damaged and there is no complete slot "
                            f"to fall back to; reinstall the desk image.")
        self._point_link(state)
        why = rollback_due(state, self._clock(), max_boot_attempts=self.config.max_boot_attempts,
                           confirm_timeout_s=self.config.confirm_timeout_s)
        if why:
            return self._rollback(state, why)
        return state, None

    def _rollback(self, state: AgentState, why: str) -> tuple[AgentState, AgentResult]:
        if state.previous_slot is None or slots.slot_version(self.state_dir, state.previous_slot) is None:
            raise SlotError(f"Version {state.version} must be rolled back ({why}) but the previous slot is not "
                            f"complete; reinstall the desk image.")
        failed = state.version
        new = rolled_back(state)
        self._commit(new)
        self._stage("rollback-committed")
        self._point_link(new)
        self._stage("rolled-back")
        self._restart()
        message = f"Rolled back from {failed} to {new.version}: {why}. {failed} will not be installed again."
        logger.warning("%s", message)
        return new, AgentResult("rolled_back", new.version, message, reason="first_boot_failed")

    def _restart(self) -> None:
        if not self.config.restart_command:
            return
        try:
            subprocess.run(self.config.restart_command, check=False, timeout=60, capture_output=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            logger.warning("could not restart the appliance (%s); it starts from `current` at next boot", e)

    # --- commands -------------------------------------------------------------------------------

    def status(self) -> AgentState:
        return self.read_state()

    def check(self) -> AgentResult:
        """One update check; never leaves the desk without a complete, active slot."""
        with self._locked():
            state, recovered = self._recover()
            if recovered is not None:
                return recovered
            if state.pending_confirm:
                return AgentResult("pending", state.version, f"Version {state.version} has not yet confirmed its "
                                                             f"first boot; no new release is installed until it does.")
            client = ReleaseClient(self.config.repository_url, self.state_dir, self.config.trusted_root)
            try:
                offer = choose_offer(state, client.offers())
                if offer is None:
                    return AgentResult("up_to_date", state.version, f"Version {state.version} is the newest release.")
                bundle = client.download(offer)
            except UpdateRefusedError as e:
                return AgentResult("refused", state.version, f"{e} This desk keeps version {state.version}.", e.reason)
            self._stage("downloaded")
            return self._install(state, bundle, offer.version)

    def install_local(self, bundle: Path) -> AgentResult:
        """First install from a bundle on the image (provisioning); later versions only come through ``check``."""
        with self._locked():
            state, _ = self._recover()
            if state.active is not None:
                raise FirmwareError(f"This desk already runs version {state.version}; updates come through `check`.")
            return self._install(state, bundle, None)

    def _install(self, state: AgentState, bundle: Path, version: Version | None) -> AgentResult:
        slot = state.inactive
        path = slots.slot_dir(self.state_dir, slot)
        if state.previous_slot is not None:
            state = forgot_previous(state)
            self._commit(state)
        slots.clear(self.state_dir, slot)
        self._stage("cleared")
        try:
            manifest = extract_bundle(bundle, path / "bundle", expected_version=version)
            version = manifest.version
            if state.installed is not None and version <= state.installed:
                raise UpdateRefusedError("rollback", f"Bundle version {version} is not newer than the installed "
                                                     f"{state.installed}.")
            self._stage("extracted")
            slots.make_venv(self.config, path, manifest)
            self._stage("installed")
            digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
            slots.mark_complete(self.state_dir, slot, version, digest)
            self._stage("complete")
            slots.health_check(self.config, self.state_dir, slot, version)
            self._stage("healthy")
        except HealthCheckError as e:
            if state.active is not None and version is not None:
                self._commit(health_failed(state, version))
            return AgentResult("unhealthy", state.version, f"{e} This desk keeps version {state.version}.",
                               reason="health_check")
        except FirmwareError as e:
            reason = getattr(e, "reason", "bad_bundle")
            return AgentResult("refused", state.version, f"{e} This desk keeps version {state.version}.", reason)
        if state.active is None:
            new = AgentState(active=slot, version=str(version))
        else:
            new = switched(state, slot, version, self._clock())
        self._commit(new)
        self._stage("committed")
        self._point_link(new)
        self._stage("switched")
        if state.active is not None:
            self._restart()
        logger.info("switched to version %s in slot %s", version, slot)
        return AgentResult("installed", str(version), f"Installed version {version} in slot {slot}"
                           + (f" (was {state.version}); it must confirm its first boot." if state.active else "."))

    def boot(self) -> AgentResult:
        """Count a start of a pending version (ExecStartPre); roll back when it has had its chances."""
        with self._locked():
            state, recovered = self._recover()
            if recovered is not None:
                return recovered
            if not state.pending_confirm:
                return AgentResult("confirmed", state.version, f"Version {state.version} starts.")
            state = booted(state)
            self._commit(state)
            state, recovered = self._recover()
            if recovered is not None:
                return recovered
            return AgentResult("pending", state.version, f"Version {state.version} start {state.boot_attempts} of "
                                                         f"{self.config.max_boot_attempts}; waiting for confirm.")

    def confirm(self) -> AgentResult:
        """The running version has started and passed its own checks: it stays (ExecStartPost)."""
        with self._locked():
            state, recovered = self._recover()
            if recovered is not None:
                return recovered
            if state.pending_confirm:
                state = confirmed(state)
                self._commit(state)
                return AgentResult("confirmed", state.version, f"Version {state.version} confirmed its first boot.")
            return AgentResult("confirmed", state.version, f"Version {state.version} was already confirmed.")
