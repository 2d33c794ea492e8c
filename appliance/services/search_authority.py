"""Authorised RFR Users: only an account with a current authorisation to search may start a request or a search.

The force's policy lets only trained officers, in a business area granted
permission, use retrospective facial recognition. Central records each
officer's training date, the last day of their authorisation and their
business area in its signed desk configuration (``core.desk_config``); a device
administrator can record one for an account made on the desk. This module is
the rule the desk applies with them:

- ``assess`` (pure): the authorisation of one account on one day, as a status
  and the words to show: current, ending within ``WARN_DAYS``, lapsed, or none
  recorded. Roles that never search need none.
- ``SearchAuthority.require``: asked by the case service before a submission,
  a photo and a search. It reads the account's authorisation afresh (so a new
  configuration counts at once, without signing in again) and the desk's own
  clock in the desk's time zone (so it holds offline), and refuses in plain
  words, audited: ``search_refused`` (or ``request_refused`` for a submission,
  when no case exists yet) with outcome ``not_authorised_user``.

While the desk's clock is in doubt, no day can be read from it: a clock set back would show a lapsed
authorisation as current. The desk's ``clock`` is then the guard's estimate (``ClockGuard.limits_now``: the last
trusted reading plus the monotonic time since, plus a margin), so the rule holds whichever way the clock jumped.
Only when there is no estimate (``clock_doubt``: ``ClockGuard.unbounded_doubt``, e.g. after a restart under a
doubt) does ``require`` refuse every account that needs an authorisation (outcome ``not_authorised_user``,
``refusal`` ``clock_doubtful``), saying the clock is in doubt and whom to call.

Signing in and reading one's own cases never depend on it: a lapsed officer
still sees what they did. Approving is not searching, so approvers are checked
by rank exactly as before (``appliance.services.policy``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from enum import StrEnum
from typing import Any

from appliance.services.accounts import User
from appliance.services.audit import AuditLog
from appliance.services.policy import PolicyRefusal, Role, can_run_desk
from core.desk_config import SearchAuthorisation
from core.display_time import long_date

#: Under this many days left, the desk's home page warns the officer to renew.
WARN_DAYS = 30
#: Whom an officer asks: the same team the desk names for every other problem, and the force's local contact.
WHOM_TO_ASK = ("Ask the RFR team, or your force's RFR single point of contact, to record your training and "
               "renew your authorisation.")
REFUSAL = "not_authorised_user"
CLOCK_DOUBTFUL = ("You cannot start a facial search request or run a search now: this desk's clock is in doubt, "
                  "so it cannot tell whether your authorisation to search is still current. This lasts until "
                  "central confirms the clock. Call the RFR helpdesk. You can still see your cases.")


class Standing(StrEnum):
    NOT_NEEDED = "not_needed"  # a role that never searches
    CURRENT = "current"
    ENDING_SOON = "ending_soon"  # current, fewer than WARN_DAYS days left
    LAPSED = "lapsed"
    MISSING = "missing"


@dataclass(frozen=True)
class Assessment:
    """One account's authorisation on one day, and what to tell them."""

    standing: Standing
    authorisation: SearchAuthorisation | None
    days_left: int | None  # days after today the authorisation still runs (0: today is its last day)

    @property
    def may_search(self) -> bool:
        return self.standing in (Standing.CURRENT, Standing.ENDING_SOON)

    @property
    def refusal(self) -> str:
        """Why a submission or search is refused, in the officer's words ('' when it is not)."""
        if self.standing is Standing.LAPSED and self.authorisation is not None:
            return (f"You cannot start a facial search request or run a search: your authorisation to search "
                    f"lapsed on {long_date(self.authorisation.authorised_until)}. You can still see your cases. "
                    + WHOM_TO_ASK)
        if self.standing is Standing.MISSING:
            return ("You cannot start a facial search request or run a search: no authorisation to search is "
                    "recorded for your account. Only trained officers authorised to use facial recognition "
                    "(Authorised RFR Users) can search. You can still see your cases. " + WHOM_TO_ASK)
        return ""

    @property
    def summary(self) -> str:
        """The status line for the officer's home page."""
        auth = self.authorisation
        if self.standing is Standing.CURRENT and auth is not None:
            return f"You are authorised to search until {long_date(auth.authorised_until)}."
        if self.standing is Standing.ENDING_SOON and auth is not None:
            left = "today is its last day" if self.days_left == 0 else (
                f"{self.days_left} day{'s' if self.days_left != 1 else ''} left")
            return (f"Your authorisation to search ends on {long_date(auth.authorised_until)} ({left}). "
                    + WHOM_TO_ASK)
        return self.refusal

    def audit_details(self) -> dict[str, Any]:
        """What the audit event records: no free text (core.events), only the standing and the dates."""
        auth = self.authorisation
        return {"refusal": self.standing.value,
                "authorised_until": auth.authorised_until.isoformat() if auth else None,
                "trained_on": auth.trained_on.isoformat() if auth else None}


def assess(role: Role, authorisation: SearchAuthorisation | None, today: date) -> Assessment:
    """The rule: a role that searches needs an authorisation whose last day is today or later."""
    if not can_run_desk(role):
        return Assessment(Standing.NOT_NEEDED, authorisation, None)
    if authorisation is None:
        return Assessment(Standing.MISSING, None, None)
    left = (authorisation.authorised_until - today).days
    if left < 0:
        return Assessment(Standing.LAPSED, authorisation, None)
    return Assessment(Standing.ENDING_SOON if left < WARN_DAYS else Standing.CURRENT, authorisation, left)


class NotAuthorisedUser(PolicyRefusal):
    """The account has no current authorisation to search; the message says why and whom to ask."""


class SearchAuthority:
    """Applies ``assess`` to a signed-in user, with the desk's clock, and audits every refusal."""

    def __init__(self, authorisation_of: Callable[[str], SearchAuthorisation | None], audit: AuditLog,
                 where: tzinfo = UTC, clock: Callable[[], float] = time.time,
                 clock_doubt: Callable[[], str | None] = lambda: None) -> None:
        """``clock_doubt`` (``ClockGuard.unbounded_doubt``): while it names a reason, no authorisation is taken as
        current (``clock`` has no time to offer)."""
        self._authorisation_of, self._audit, self._where, self._clock = authorisation_of, audit, where, clock
        self._clock_doubt = clock_doubt

    def today(self) -> date:
        """Today at this desk, from its own clock (offline too) in the zone its pages show."""
        return datetime.fromtimestamp(self._clock(), UTC).astimezone(self._where).date()

    def assess(self, user: User) -> Assessment:
        return assess(user.role, self._authorisation_of(user.username), self.today())

    def require(self, user: User, step: str, case_id: str | None = None, custody_ref: str | None = None) -> None:
        """Refuse ``step`` ("submission", "photo" or "search") unless ``user`` may search today; audited."""
        found = self.assess(user)
        if found.standing is Standing.NOT_NEEDED:
            return
        doubt = self._clock_doubt() if found.may_search else None
        if doubt is not None:  # a limit the doubted clock cannot rule out: refused, and said why
            details = {**found.audit_details(), "refusal": "clock_doubtful", "clock": doubt}
            if case_id is None:
                self._audit.record("request_refused", user.username, REFUSAL, step=step, **details)
            else:
                self._audit.record("search_refused", user.username, REFUSAL, case_id=case_id,
                                   custody_ref=custody_ref, step=step, **details)
            raise NotAuthorisedUser(CLOCK_DOUBTFUL)
        if found.may_search:
            return
        if case_id is None:
            self._audit.record("request_refused", user.username, REFUSAL, step=step, **found.audit_details())
        else:
            self._audit.record("search_refused", user.username, REFUSAL, case_id=case_id, custody_ref=custody_ref,
                               step=step, **found.audit_details())
        raise NotAuthorisedUser(found.refusal)
