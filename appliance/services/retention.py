"""The end of a viable match's retention period: its probe image, face thumbnail and candidate list are destroyed.

A case that closes with a viable match keeps the probe image, the probe face
thumbnail and the candidate list with its Match Report, as the basis of the
intelligence lead (``appliance.services.cases.RETENTION_VIABLE``). Central's
signed desk configuration sets how long: ``retention.viable_match_days``. This
job enforces it: every case closed with a viable match more than that many days
ago loses what it kept, destroyed exactly as a no-viable-match case's data is
(rows deleted with ``secure_delete`` zeroing the freed pages, then the WAL
checkpointed with TRUNCATE: ``CaseStore.purge_retained``), and each purge is a
``deletion`` audit event by the ``system`` actor, naming the case and what was
destroyed, committed in the same transaction as the deletion.

It runs when the desk starts, then every hour in a background thread
(``PURGE_INTERVAL_S``); ``python -m appliance retention purge`` runs it once by
hand while the desk service is stopped (``appliance.storage.service_lock``).

What is destroyed, and what is kept:

* Destroyed: the probe image, the probe face thumbnail, the probe template and
  any face crops if anything of them is left (both already went at closing),
  and the candidate list (``case_candidates``: each candidate's library record
  id and similarity score, the result of comparing the detainee's face with
  named library subjects). Reference images are not copied per case: the desk
  shows them from the library by the candidate's record id, so once the list
  is gone the case no longer reaches any reference image. The candidate list
  goes as a whole, as it does for a no-viable-match case: the lookalikes in it
  were never matched, and the viable candidate was the intelligence lead,
  which by now lives in the force's own custody and intelligence records.
* Kept: the case record (custody reference, who submitted, approved, judged,
  when, why, the outcome ``viable_match``, closing date, and now the date the
  images were destroyed), the Match Report (the candidate's rank and the
  officer's written reasons: seven text fields, no image, template or score;
  it records why a person was treated as a lead, which an auditor or a
  complaint may need to see), the peer review record (text) and the audit log
  (never biometric: ``core.events`` refuses such details). The oversight reports
  are built from the audit events, which this job only adds to.

No configuration applied yet: nothing is purged, and the desk says so. A
period is the force's decision as data controller, set in central's signed
configuration; a desk that invented one could destroy material the force must
keep (for example under the CPIA disclosure duties while an investigation is
live), and destruction cannot be undone, whereas keeping the images until a
period arrives can be put right: the first run after central's configuration
is applied destroys everything already past the period. So a custody
data-protection officer would expect the desk not to guess, and to make the gap
visible: every run logs a warning, the command prints it, and the page of every
retained viable match says that no period is set and the images are kept until
one is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from appliance.services.audit import AuditLog
from appliance.services.cases import Case, State
from appliance.services.periodic import Periodic
from appliance.storage.cases import CaseStore
from appliance.storage.desk_config import DeskConfigStore
from core.display_time import long_date
from core.errors import CustodyRfrError

logger = logging.getLogger(__name__)

ACTOR = "system"  # as for library and configuration updates: no person started it
PURGE_INTERVAL_S = 3600.0
DAY_S = 86400
WHY = "retention period ended"
RETAINED = ["case record", "Match Report text", "peer review record", "audit events"]
NO_PERIOD = ("no retention period has been applied on this desk (central's signed configuration sets "
             "retention.viable_match_days): viable matches' images are kept until one is")


def day(ts: float) -> str:
    """A date the way the desk's pages write it: 5 March 2026 (the desk's local date)."""
    return long_date(date.fromtimestamp(ts))


def destroyed_notice(destroyed_at: float, closed_at: float, days: int) -> str:
    """The case's retention text once its images are gone (shown on the case page and the summary)."""
    return (f"Viable match: the retention period of {days} days from the case closing on {day(closed_at)} ended, "
            f"and the retained images were destroyed on {day(destroyed_at)}: the probe image, its face "
            f"thumbnail and the candidate list are no longer held on this device. This case record, the "
            f"Match Report's text and the audit trail remain.")


@dataclass(frozen=True)
class Purged:
    """One case whose retained biometrics were destroyed."""

    case_id: str
    custody_ref: str
    closed_at: float
    destroyed: list[str]
    days: int

    def line(self) -> str:
        return (f"purged case {self.case_id} (custody record {self.custody_ref}, closed {day(self.closed_at)}, "
                f"retention {self.days} days): destroyed {', '.join(self.destroyed) or 'nothing left to destroy'}")


class RetentionError(CustodyRfrError):
    """Some cases could not be purged (each was left whole); the message names them, ``purged`` the rest."""

    def __init__(self, message: str, purged: list[Purged]) -> None:
        super().__init__(message)
        self.purged = purged


class RetentionService:
    """Finds viable matches past central's retention period and destroys what they kept."""

    def __init__(self, store: CaseStore, config: DeskConfigStore, audit: AuditLog,
                 clock: Callable[[], float] = time.time, clock_doubt: Callable[[], str | None] = lambda: None) -> None:
        """``clock_doubt`` (``ClockGuard.doubt``): while it names a reason, the purge destroys nothing, since a
        clock hours ahead would destroy images before their time."""
        self._store, self._config, self._audit, self._clock = store, config, audit, clock
        self._clock_doubt = clock_doubt
        self._lock = threading.Lock()
        self._periodic = Periodic("retention-purge", self.purge)

    def period_days(self) -> int | None:
        """``retention.viable_match_days`` of the configuration in effect, or None if none was applied."""
        period = self._period()
        return period[0] if period else None

    def _period(self) -> tuple[int, int] | None:
        """(viable_match_days, configuration version) in effect, or None."""
        applied = self._config.applied()
        return (applied.config.retention.viable_match_days, applied.version) if applied else None

    def notice(self, case: Case) -> str | None:
        """For a viable match still holding its images: when they will be destroyed, or that no period is set."""
        if case.state is not State.CLOSED_VIABLE or case.biometrics_destroyed_at is not None:
            return None
        days = self.period_days()
        if days is None:
            return ("No retention period has been set on this desk yet (central's signed configuration sets "
                    "it): these images are kept until one is, and destroyed as soon as this case is older than it.")
        due = float(case.closed_at) + days * DAY_S
        if due < self._clock():
            return (f"The retention period of {days} days has ended: these images will be destroyed at the "
                    "next retention run (within the hour).")
        return f"These images will be destroyed on {day(due)}, at the end of the {days}-day retention period."

    def purge(self, now: float | None = None) -> list[Purged]:
        """Destroy what every viable match past the period kept; each case once (a second run finds nothing)."""
        with self._lock:
            period = self._period()
            if period is None:
                logger.warning("retention purge: %s", NO_PERIOD)
                return []
            days, version = period
            doubt = self._clock_doubt() if now is None else None
            if doubt is not None:
                logger.warning("retention purge held back: the desk's clock is doubtful (%s); nothing is destroyed "
                               "until it agrees with central's again", doubt, extra={"event": "retention_held"})
                return []
            now = self._clock() if now is None else now
            purged, failed = [], []
            for row in self._store.retained_due(State.CLOSED_VIABLE.value, now - days * DAY_S):
                try:
                    done = self._purge_one(row, now, days, version)
                except Exception as e:  # one case's failure must not keep the others' images
                    logger.exception("retention purge of case %s failed; nothing of it was destroyed",
                                     row["case_id"])
                    failed.append(f"{row['case_id']} ({type(e).__name__}: {e})")
                    continue
                if done is not None:
                    purged.append(done)
            if purged:
                logger.info("retention purge: %d case(s) past %d days purged", len(purged), days)
            if failed:
                raise RetentionError(f"{len(purged)} case(s) purged, but not: {'; '.join(failed)}. Nothing of "
                                     "those was destroyed; the next run tries again.", purged)
            return purged

    def _purge_one(self, row: dict[str, Any], now: float, days: int, version: int) -> Purged | None:
        case_id, custody_ref, closed_at = str(row["case_id"]), str(row["custody_ref"]), float(row["closed_at"])

        def record(destroyed: list[str]) -> None:
            self._audit.record("deletion", ACTOR, "destroyed", case_id=case_id, custody_ref=custody_ref, why=WHY,
                               destroyed=destroyed, retained=RETAINED, viable_match_days=days,
                               config_version=version,
                               closed_on=date.fromtimestamp(closed_at).isoformat(),
                               retention_ended_on=date.fromtimestamp(closed_at + days * DAY_S).isoformat())

        destroyed = self._store.purge_retained(case_id, now, destroyed_notice(now, closed_at, days), record)
        if destroyed is None:
            return None
        return Purged(case_id, custody_ref, closed_at, destroyed, days)

    # The background job -------------------------------------------------------------------------
    def start(self, interval_s: float = PURGE_INTERVAL_S) -> None:
        """Purge every ``interval_s`` seconds in a daemon thread (the run at start is the caller's)."""
        self._periodic.start(interval_s)

    def stop(self) -> None:
        self._periodic.stop()
