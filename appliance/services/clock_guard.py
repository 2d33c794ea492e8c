"""Whether the desk's clock can be believed: jumps noticed, said in the audit log, destructive timing held back.

A desk's wall clock can jump by hours (a dead RTC battery after a power cut, a wrong manual setting, NTP
stepping it back). Audit times, retention deadlines and session ages are all read from it, so a decision
taken on a wrong clock must at least be recorded as taken on a doubtful one, and a destructive one (the
retention purge) must wait until the clock is trusted again.

The guard notices three things, none of which needs the machine's clock to be changed to test:

* a jump while running: the wall clock moved more or less than the monotonic clock since the last check,
  by more than ``tolerance_s`` (forwards or backwards);
* a clock behind the log at start: now is earlier than the newest recorded audit event;
* a doubt already in the log: the newest clock note in the chain says doubtful (the desk restarted, or a
  command such as ``retention purge`` opened the database, before central's time cleared it);
* central's word: each signed ack carries central's time. A desk behind central by more than the tolerance
  is doubtful for sure; one within it is trusted again. A desk that seems *ahead* may only be reading an
  ack that waited at the broker, so that alone neither raises nor clears a doubt. Only an ack covering an
  event logged after the doubt was raised can clear it: central cannot have signed that ack before the
  doubt, whereas an old ack (replayed, or held at the broker across a restart) carries an old time that a
  clock set back by the same hours would agree with.

It never sets the clock (that is the OS's NTP job); it says so and holds back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appliance.storage.outbox import Outbox

logger = logging.getLogger(__name__)

TOLERANCE_S = 120.0
Clock = Callable[[], float]


def _since_boot() -> float:
    """A clock that never jumps and, unlike ``time.monotonic``, counts a suspended machine's sleep (no false jump)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


class ClockGuard:
    """Tracks doubt about the wall clock; ``check`` reports each new jump once (for the audit log)."""

    def __init__(self, last_recorded: float | None = None, *, wall: Clock = time.time,
                 monotonic: Clock = _since_boot, tolerance_s: float = TOLERANCE_S,
                 head_seq: Callable[[], int] = lambda: 0, standing_doubt: str | None = None) -> None:
        """``head_seq`` (``Outbox.head_seq``): the newest logged event, so an ack can be told fresh from old.
        ``standing_doubt``: why the log's newest clock note says doubtful (already recorded, so not again)."""
        self._wall, self._monotonic, self._tolerance = wall, monotonic, tolerance_s
        self._head_seq = head_seq
        self._doubt_after = 0  # an ack must cover an event after this one to clear the doubt
        self._lock = threading.Lock()
        self._anchor = (wall(), monotonic())
        self._doubt: str | None = None
        self._pending: list[dict[str, Any]] = []
        self.offset_s: float | None = None  # desk minus central, from the newest ack; None until one
        if standing_doubt is not None:
            self._doubt, self._doubt_after = standing_doubt, head_seq()
            logger.warning("desk clock still doubtful: %s", standing_doubt, extra={"event": "clock_doubtful"})
        if last_recorded is not None and self._anchor[0] < last_recorded - tolerance_s:
            self._doubt_after = head_seq()
            behind = last_recorded - self._anchor[0]
            self._raise_doubt(f"the clock reads {_iso(self._anchor[0])}, {behind:.0f} s before the newest "
                              f"recorded event ({_iso(last_recorded)})", reason="behind_log", jump_s=-round(behind, 3))

    @classmethod
    def from_log(cls, outbox: Outbox, **kwargs: Any) -> ClockGuard:
        """The guard for a process opening the device database: judged against the log's newest time, still
        doubtful if the log's newest clock note says so, and told fresh acks from old by the log's head."""
        note = outbox.last_clock_note()
        doubt = None
        if note is not None and note[0] == "clock_doubtful":
            doubt = note[1] or "recorded as doubtful before"
        return cls(outbox.head_time(), head_seq=lambda: outbox.head_seq, standing_doubt=doubt, **kwargs)

    @property
    def doubt(self) -> str | None:
        """Why the clock is not believed now, in words for the log and the audit; None when it is."""
        with self._lock:
            return self._doubt

    def _raise_doubt(self, why: str, **details: Any) -> None:
        self._doubt = why
        self._pending.append({"outcome": "clock_doubtful", "why": why, **details})
        logger.warning("desk clock doubtful: %s", why, extra={"event": "clock_doubtful"})

    def check(self) -> list[dict[str, Any]]:
        """Look for a jump since the last check; return what is new to record (each once), oldest first."""
        head = self._head_seq()  # read outside the lock: it takes the database's
        wall, mono = self._wall(), self._monotonic()
        with self._lock:
            drift = (wall - self._anchor[0]) - (mono - self._anchor[1])
            self._anchor = (wall, mono)
            if abs(drift) > self._tolerance:
                direction = "forwards" if drift > 0 else "backwards"
                self._doubt_after = head
                self._raise_doubt(f"the clock jumped {direction} by {abs(drift):.0f} s (now {_iso(wall)})",
                                  reason=f"jumped_{direction}", jump_s=round(drift, 3))
            pending, self._pending = self._pending, []
        return pending

    def observe_central(self, central_time: datetime, events_through: int) -> None:
        """Central's signed time (an ack's issue time), just received, with the last event that ack covers."""
        head = self._head_seq()
        offset = self._wall() - central_time.timestamp()
        with self._lock:
            self.offset_s = round(offset, 3)
            if offset < -self._tolerance:
                if self._doubt is None:
                    self._doubt_after = head
                    self._raise_doubt(f"the clock is {-offset:.0f} s behind central's", reason="behind_central",
                                      jump_s=round(offset, 3))
            elif abs(offset) <= self._tolerance and self._doubt is not None and events_through > self._doubt_after:
                self._pending.append({"outcome": "clock_trusted", "why": f"agrees with central's within "
                                      f"{self._tolerance:.0f} s after: {self._doubt}"})
                logger.info("desk clock agrees with central's again", extra={"event": "clock_trusted"})
                self._doubt = None
