"""Whether the desk's clock can be believed: jumps noticed, said in the audit log, destructive timing held back.

A desk's wall clock can jump by hours (a dead RTC battery after a power cut, a wrong manual setting, NTP
stepping it back). Audit times, retention deadlines and session ages are all read from it, so a decision
taken on a wrong clock must at least be recorded as taken on a doubtful one, and a destructive one (the
retention purge) must wait until the clock is trusted again.

The guard notices three things, none of which needs the machine's clock to be changed to test:

* a jump while running: the wall clock moved more or less than the monotonic clock since the last check,
  by more than ``tolerance_s`` (forwards or backwards);
* steps that add up: several moves each under the tolerance (a clock set back a minute at a time) are summed
  since the clock was last trusted, and doubted once the sum passes the tolerance (``stepped_*``);
* a clock behind the log at start: now is earlier than the newest recorded audit event, or than the newest
  time central signed a document this desk holds (its configuration, its library authorisation) at;
* a doubt already in the log: the newest clock note in the chain says doubtful (the desk restarted, or a
  command such as ``retention purge`` opened the database, before central's time cleared it);
* central's word: each signed ack carries central's time. A desk behind central by more than the tolerance
  is doubtful for sure; one within it is trusted again. A desk that seems *ahead* may only be reading an
  ack that waited at the broker, so that alone neither raises nor clears a doubt. Only an ack covering an
  event logged after the doubt was raised can clear it: central cannot have signed that ack before the
  doubt, whereas an old ack (replayed, or held at the broker across a restart) carries an old time that a
  clock set back by the same hours would agree with.
* a clock ahead, from central's word on the desk's own events: central signs an ack only after the event it
  covers was logged, so an event logged at a desk time later than the ack's signed time (by more than the
  tolerance) was logged on a clock that was ahead. A late ack only makes the gap smaller, so this never
  accuses a right clock; it is the only sign of a clock ahead, and it needs central (none offline).

It never sets the clock (that is the OS's NTP job); it says so and holds back.

A doubt need not stop the desk. When it was raised by a *jump* while this process ran, the reading just before the
jump was as good as the wall clock ever is offline, and the monotonic clock has counted since: the true time is
that reading plus the monotonic time elapsed (``limits_now`` adds a margin, so an end is taken as passed a little
early). Expiries and last days are then tested against that estimate, whichever way the wall clock jumped, so a
clock set back revives nothing and a clock set forwards ends nothing early. There is no estimate (``limits_now``
is None: refuse) after a reboot under a standing doubt (a service restart within the same boot keeps the reading:
``appliance.storage.clock_readings``), at a first start behind the log or a signed document, and once central's
time shows the estimate wrong (behind central's signed time) or shows the clock wrong since before the doubt
(``behind_central``, ``ahead_of_central``). Nothing from the network can set or move the estimate: central's acks
can only take it away (an old, replayed ack carries an earlier time, which never contradicts it) or clear the
doubt as described above.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appliance.storage.clock_readings import TrustedReading, TrustedReadingStore, current_boot_id
from appliance.storage.outbox import Outbox

logger = logging.getLogger(__name__)

TOLERANCE_S = 120.0
#: How far a monotonic clock may drift from true time (crystal error; 100 ppm is about 9 s a day).
MONOTONIC_DRIFT = 1e-4
_READINGS_KEPT = 256
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
                 head_seq: Callable[[], int] = lambda: 0, standing_doubt: str | None = None,
                 event_time: Callable[[int], float | None] = lambda _seq: None,
                 signed_at: float | None = None, readings: TrustedReadingStore | None = None,
                 boot_id: str | None = None) -> None:
        """``head_seq`` (``Outbox.head_seq``): the newest logged event, so an ack can be told fresh from old.
        ``standing_doubt``: why the log's newest clock note says doubtful (already recorded, so not again).
        ``event_time`` (``Outbox.event_time``): when the desk's clock said an event was logged (a clock ahead).
        ``signed_at``: the newest time central signed a document the desk holds at (true time is no earlier).
        ``readings``: where the last trusted reading is kept while a doubt stands, so a restart within the same
        boot (``boot_id``, the kernel's by default) still has its estimate."""
        self._wall, self._monotonic, self._tolerance = wall, monotonic, tolerance_s
        self._head_seq, self._event_time = head_seq, event_time
        self._readings: dict[int, float] = {}  # next event's seq -> the wall clock read just before it was logged
        self._doubt_after = 0  # an ack must cover an event after this one to clear the doubt
        self._lock = threading.Lock()
        self._anchor = (wall(), monotonic())
        self._steps_from = self._anchor  # small moves of the wall clock are summed from this reading
        self._doubt: str | None = None
        self._pending: list[dict[str, Any]] = []
        self._trusted: tuple[float, float] | None = None  # (wall, monotonic) last read on an undoubted clock
        self.offset_s: float | None = None  # desk minus central, from the newest ack; None until one
        if standing_doubt is not None:
            self._doubt, self._doubt_after = standing_doubt, head_seq()
            logger.warning("desk clock still doubtful: %s", standing_doubt, extra={"event": "clock_doubtful"})
        if last_recorded is not None and self._anchor[0] < last_recorded - tolerance_s:
            self._doubt_after = head_seq()
            behind = last_recorded - self._anchor[0]
            self._raise_doubt(f"the clock reads {_iso(self._anchor[0])}, {behind:.0f} s before the newest "
                              f"recorded event ({_iso(last_recorded)})", reason="behind_log", jump_s=-round(behind, 3))
        elif signed_at is not None and self._anchor[0] < signed_at - tolerance_s:
            self._doubt_after = head_seq()
            behind = signed_at - self._anchor[0]
            self._raise_doubt(f"the clock reads {_iso(self._anchor[0])}, {behind:.0f} s before central signed a "
                              f"document this desk holds ({_iso(signed_at)})", reason="behind_signed",
                              jump_s=-round(behind, 3))
        if self._doubt is None:
            self._trusted = self._anchor
        self._readings_store, self._boot_id = readings, current_boot_id() if boot_id is None else boot_id
        self._saved: TrustedReading | None = None
        if readings is not None:
            self._saved = kept = readings.recall()
            if (self._doubt is not None and kept is not None and kept.boot_id and kept.boot_id == self._boot_id
                    and kept.since_boot <= self._anchor[1]):
                self._trusted = (kept.wall, kept.since_boot)  # the reading from before the restart, this boot
            self._persist()

    @classmethod
    def from_log(cls, outbox: Outbox, **kwargs: Any) -> ClockGuard:
        """The guard for a process opening the device database: judged against the log's newest time, still
        doubtful if the log's newest clock note says so, and told fresh acks from old by the log's head."""
        note = outbox.last_clock_note()
        doubt = None
        if note is not None and note[0] == "clock_doubtful":
            doubt = note[1] or "recorded as doubtful before"
        return cls(outbox.head_time(), head_seq=lambda: outbox.head_seq, standing_doubt=doubt,
                   event_time=outbox.event_time, **kwargs)

    def wall(self) -> float:
        """The desk's wall clock as the guard reads it (Unix seconds): what session times are written in."""
        return self._wall()

    def monotonic(self) -> float:
        """A clock that never jumps (seconds since boot): for timing inside this process."""
        return self._monotonic()

    def limits_now(self) -> float | None:
        """The time (Unix seconds) to test an end against (an expiry, an authorisation's last day).

        The wall clock while it is trusted. While it is doubted, the latest the true time can be: the last reading
        taken on a trusted clock plus the monotonic time since, plus a margin (the tolerance and the monotonic
        clock's drift), so a clock set back cannot make an ended thing current. None when this process has no such
        reading (see the module): the caller refuses whatever has an end."""
        wall, mono = self._wall(), self._monotonic()
        with self._lock:
            if self._doubt is None and not self._jumped(wall, mono):
                return wall
            if self._trusted is None:
                return None
            trusted_wall, since = self._trusted
        elapsed = max(0.0, mono - since)
        return trusted_wall + elapsed + self._tolerance + elapsed * MONOTONIC_DRIFT

    def unbounded_doubt(self) -> str | None:
        """The doubt, when ``limits_now`` has no estimate to offer (None otherwise): refuse what has an end."""
        return self.doubt if self.limits_now() is None else None

    def _jumped(self, wall: float, mono: float) -> bool:
        """A jump since the last ``check`` not yet noted (the next event's ``check`` records it): a decision
        taken before that event must not be taken on the jumped clock either. Call with the lock held."""
        return abs((wall - self._anchor[0]) - (mono - self._anchor[1])) > self._tolerance

    @property
    def doubt(self) -> str | None:
        """Why the clock is not believed now, in words for the log and the audit; None when it is. A jump not yet
        recorded (no event since) already counts."""
        wall, mono = self._wall(), self._monotonic()
        with self._lock:
            if self._doubt is None and self._jumped(wall, mono):
                return f"the clock jumped (now {_iso(wall)}); recorded with the next event"
            return self._doubt

    def _persist(self) -> None:
        """Keep the reading ``limits_now`` goes on while a doubt stands, and nothing once the clock is trusted or
        no reading is left to go on. The database's lock is taken first and the guard's inside it, never the other
        way round (the guard never waits for the database while holding its own)."""
        if self._readings_store is None:
            return

        def wanted() -> TrustedReading | None:
            with self._lock:
                trusted = self._trusted if self._doubt is not None else None
            return None if trusted is None else TrustedReading(trusted[0], trusted[1], self._boot_id)

        self._saved = self._readings_store.keep(wanted, self._saved)

    def _raise_doubt(self, why: str, **details: Any) -> None:
        self._doubt = why
        self._pending.append({"outcome": "clock_doubtful", "why": why, **details})
        logger.warning("desk clock doubtful: %s", why, extra={"event": "clock_doubtful"})

    def check(self) -> list[dict[str, Any]]:
        """Look for a jump since the last check; return what is new to record (each once), oldest first."""
        head = self._head_seq()  # read outside the lock: it takes the database's
        wall, mono = self._wall(), self._monotonic()
        with self._lock:
            self._readings[head + 1] = wall  # ``check`` runs before each event: the clock that event is logged on
            if len(self._readings) > _READINGS_KEPT:
                del self._readings[min(self._readings)]
            drift = (wall - self._anchor[0]) - (mono - self._anchor[1])
            stepped = (wall - self._steps_from[0]) - (mono - self._steps_from[1])
            self._anchor = (wall, mono)
            if abs(drift) > self._tolerance:
                direction = "forwards" if drift > 0 else "backwards"
                self._doubt_after = head
                self._raise_doubt(f"the clock jumped {direction} by {abs(drift):.0f} s (now {_iso(wall)})",
                                  reason=f"jumped_{direction}", jump_s=round(drift, 3))
                self._steps_from = (wall, mono)
            elif abs(stepped) > self._tolerance and self._doubt is None:
                direction = "forwards" if stepped > 0 else "backwards"
                self._doubt_after = head
                self._raise_doubt(f"the clock was moved {direction} by {abs(stepped):.0f} s in steps since "
                                  f"{_iso(self._steps_from[0])}, each under {self._tolerance:.0f} s (now {_iso(wall)})",
                                  reason=f"stepped_{direction}", jump_s=round(stepped, 3))
                self._trusted = self._steps_from  # the last reading before the steps began is the one to go on
                self._steps_from = (wall, mono)
            elif self._doubt is None:
                self._trusted = (wall, mono)  # (a doubt keeps the last reading before it)
            pending, self._pending = self._pending, []
        self._persist()
        return pending

    def observe_central(self, central_time: datetime, events_through: int) -> None:
        """Central's signed time (an ack's issue time), just received, with the last event that ack covers."""
        head = self._head_seq()
        with self._lock:
            logged = self._readings.get(events_through)
        if logged is None and events_through > 0:
            logged = self._event_time(events_through)
        wall, mono = self._wall(), self._monotonic()
        offset = wall - central_time.timestamp()
        with self._lock:
            self.offset_s = round(offset, 3)
            if self._doubt is not None and self._trusted is not None:
                estimate = self._trusted[0] + (mono - self._trusted[1])
                if central_time.timestamp() > estimate + self._tolerance:  # central signed it later than we think
                    logger.warning("desk clock estimate is behind central's signed time: no estimate now")
                    self._trusted = None
            ahead = None if logged is None else logged - central_time.timestamp()
            if ahead is not None and ahead > self._tolerance:
                if self._doubt is None:
                    self._doubt_after = head
                    self._raise_doubt(f"the clock is ahead: it read {_iso(logged)} when it logged event "
                                      f"{events_through}, {ahead:.0f} s after central's signed time for it "
                                      f"({_iso(central_time.timestamp())})", reason="ahead_of_central",
                                      jump_s=round(ahead, 3))
                    self._trusted = None  # the readings before were ahead too
            elif offset < -self._tolerance:
                if self._doubt is None:
                    self._trusted = None  # behind since before any jump this process saw
                    self._doubt_after = head
                    self._raise_doubt(f"the clock is {-offset:.0f} s behind central's", reason="behind_central",
                                      jump_s=round(offset, 3))
            elif abs(offset) <= self._tolerance and self._doubt is not None and events_through > self._doubt_after:
                self._pending.append({"outcome": "clock_trusted", "why": f"agrees with central's within "
                                      f"{self._tolerance:.0f} s after: {self._doubt}"})
                logger.info("desk clock agrees with central's again", extra={"event": "clock_trusted"})
                self._doubt = None
                self._trusted = self._steps_from = (wall, mono)
        self._persist()


class ClockNotedAudit:
    """The audit log as the updaters see it: while the clock is doubted, each event they record says so.

    Library, configuration and authorisation updates are checked by TUF against the desk's clock (metadata
    expiry): on a clock set back, expired metadata passes; on one set forwards, fresh metadata is refused as
    expired. Neither is decided differently here (TUF's version checks still stop a rollback), but every update
    event recorded on a doubted clock carries ``clock_doubtful`` with the reason, so nobody reads it as checked
    on a good clock."""

    def __init__(self, audit: Any, doubt: Callable[[], str | None]) -> None:
        self._audit, self._doubt = audit, doubt

    def record(self, type: str, actor: str, outcome: str, **details: Any) -> object:
        why = self._doubt()
        if why is not None:
            details["clock_doubtful"] = why
        return self._audit.record(type, actor, outcome, **details)
