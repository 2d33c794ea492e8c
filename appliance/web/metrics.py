"""The desk's Prometheus metrics: what happened (counters, stage latencies) and what the desk holds now.

Events are counted as they happen, from hooks the desk already has: every audit event as it is stored
(``AuditLog.observe``: searches, refusals by reason, sign-in failures), each stage of a search as it runs
(``FacePipeline.on_stage``: decode, detect, embed, search) and each library update check
(``LibraryUpdater.on_result``). State is read when Prometheus scrapes (``DeskStateCollector``): the outbox
and its oldest unacknowledged event, the library's version and age, the face models and their licence grade,
the link to central. The desk serves from one gunicorn worker process, so one in-process registry is the
whole desk; it is built per app, never the global one, so a test can open several desks in one process.

Labels are code words only (an outcome, a reason code, a stage, a model ref) through
``webserver.metrics.label_value``: never a case id, a custody reference, a subject, a username or a score.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.runtime import Desk
from appliance.services.health import software_version
from appliance.updates.updater import UpdateResult
from core.events import AuditEvent
from webserver.metrics import label_value, reason_code

#: Seconds; a search's stages run from a few milliseconds (the index) to a second or more (a large photo on
#: a slow desk), and a stage taking over 10 s is a fault whatever its exact time.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SEARCH_EVENT = "search"
SIGN_IN_EVENT = "login"


class DeskMetrics:
    """The desk's registry and the counters its hooks feed."""

    def __init__(self, desk: Desk) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram("rfr_desk_search_stage_seconds", "Time each stage of a search took: decode "
                                       "and detect and embed the probe photo, search the library index.",
                                       ["stage"], registry=r, buckets=STAGE_BUCKETS)
        self.searches = Counter("rfr_desk_searches", "Library searches run, by outcome (candidates_shown, "
                                "no_candidates).", ["outcome"], registry=r)
        self.refusals = Counter("rfr_desk_refusals", "Refused steps, by audit event and reason (no_face, "
                                "image_rejected, probe_quality, policy, not_a_party, an update's reason code).",
                                ["event", "reason"], registry=r)
        self.sign_in_failures = Counter("rfr_desk_signin_failures", "Refused sign-ins, by reason.", ["reason"],
                                        registry=r)
        self.audit_events = Counter("rfr_desk_audit_events", "Audit events recorded, by type and outcome.",
                                    ["type", "outcome"], registry=r)
        self.update_checks = Counter("rfr_desk_library_update_checks", "Library update checks, by outcome "
                                     "(installed, up_to_date, refused, unavailable) and reason code.",
                                     ["outcome", "reason"], registry=r)
        for stage in ("decode", "detect", "embed", "search"):
            self.stage_seconds.labels(stage=stage)  # every stage present from the first scrape, at zero
        r.register(DeskStateCollector(desk))
        desk.audit.observe(self.count_event)
        desk.pipeline.on_stage = self.observe_stage
        if desk.updater is not None:
            desk.updater.on_result = self.count_update

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=label_value(stage)).observe(max(0.0, seconds))

    def count_event(self, event: AuditEvent) -> None:
        """One stored audit event: by type and outcome, and as a search, refusal or sign-in failure."""
        outcome = reason_code(event.outcome)
        self.audit_events.labels(type=reason_code(event.type), outcome=outcome).inc()
        if event.type == SEARCH_EVENT:
            self.searches.labels(outcome=outcome).inc()
        elif event.type == SIGN_IN_EVENT and event.outcome == "refused":
            self.sign_in_failures.labels(reason=reason_code(event.details.get("reason"))).inc()
        elif event.type.endswith("_refused") or event.outcome == "refused":
            # The reason is the outcome (search_refused: no_face...), or the code in the details for the
            # events whose outcome is just "refused" (library updates, configuration, fleet commands).
            why = event.details.get("reason") if event.outcome in ("refused", "fleet_command_refused") else None
            self.refusals.labels(event=reason_code(event.type), reason=reason_code(why or event.outcome)).inc()

    def count_update(self, result: UpdateResult) -> None:
        self.update_checks.labels(outcome=reason_code(result.outcome),
                                  reason=reason_code(result.reason) if result.reason else "none").inc()


class DeskStateCollector(Collector):
    """Gauges read from the desk at each scrape, so they are never out of date between events."""

    def __init__(self, desk: Desk) -> None:
        self._desk = desk
        self._version = software_version()

    def collect(self) -> Iterator[Metric]:
        desk = self._desk
        withdrawn = desk.wipe.withdrawn.is_set()
        yield _gauge("rfr_desk_withdrawn", "1 once central's signed wipe was carried out on this desk.",
                     1 if withdrawn else 0)
        if withdrawn:
            return  # the database and keys are gone: nothing else is left to read
        info = GaugeMetricFamily("rfr_desk_info", "This desk: its device id and software version.",
                                 labels=["device", "software_version"])
        info.add_metric([label_value(desk.settings.device_id), label_value(self._version)], 1)
        yield info
        yield _gauge("rfr_desk_outbox_depth", "Audit events and checkpoints central has not acknowledged yet.",
                     desk.outbox.depth())
        yield _gauge("rfr_desk_outbox_oldest_unacknowledged_age_seconds", "How long ago the oldest audit event "
                     "central has not acknowledged was recorded (0: none waiting).", _oldest_pending_age(desk))
        yield _gauge("rfr_desk_audit_head_seq", "Sequence number of the newest audit event on this desk.",
                     desk.outbox.head_seq)
        held = [desk.libraries.primary_id] + [i for i, _ in desk.libraries.held()]  # provisioned first, if held
        snapshot = next((s for s in map(desk.libraries.snapshot, held) if s is not None), None)
        if snapshot is not None:
            created = _timestamp(snapshot.created_at)
            yield _gauge("rfr_desk_library_version", "Version of the reference library searches run on.",
                         snapshot.version)
            yield _gauge("rfr_desk_library_records", "Reference records in that library.", snapshot.count)
            yield _gauge("rfr_desk_library_created_timestamp_seconds", "When that library version was built "
                         "(UNIX time).", created)
            yield _gauge("rfr_desk_library_age_seconds", "How old that library version is.",
                         max(0.0, time.time() - created) if not math.isnan(created) else created)
        models = GaugeMetricFamily("rfr_desk_model_info", "The face models in use, with their licence grade "
                                   "(evaluation-grade models must be replaced before live use).",
                                   labels=["role", "model", "grade"])
        evaluation = 0
        for role, manifest in (("detector", desk.pipeline.detector.manifest),
                               ("embedder", desk.pipeline.embedder_manifest)):
            models.add_metric([role, label_value(manifest.ref), manifest.licence.grade], 1)
            evaluation += manifest.licence.grade == "evaluation"
        yield models
        yield _gauge("rfr_desk_evaluation_grade_models", "Face models in use that are evaluation-grade only.",
                     evaluation)
        yield _gauge("rfr_desk_central_connected", "1 while the link to central's broker is up.",
                     1 if desk.mqtt.connected else 0)
        last_ack = desk.mqtt.last_ack_at
        yield _gauge("rfr_desk_last_ack_age_seconds", "Seconds since central last acknowledged audit events "
                     "(NaN: not yet since the desk started).",
                     math.nan if last_ack is None else max(0.0, time.time() - last_ack))
        if desk.updater is not None:
            running, finished = desk.updater.compaction_status()
            yield _gauge("rfr_desk_library_compaction_running", "1 while a background compaction folds the library's "
                         "delta segments into a new base.", 1 if running else 0)
            compactions = CounterMetricFamily("rfr_desk_library_compactions", "Background compactions finished "
                                              "since start, by outcome (completed; failed or stopped: the version "
                                              "before it kept serving).", labels=["outcome"])
            for outcome in ("completed", "failed", "stopped"):
                compactions.add_metric([outcome], finished.get(outcome, 0))
            yield compactions
        yield CounterMetricFamily("rfr_desk_heartbeats_sent", "Heartbeats published to central since start.",
                                  value=desk.health.sent)
        yield _gauge("rfr_desk_clock_doubtful", "1 while the desk's clock is not believed (a jump, or behind the "
                     "log or central's): the retention purge waits.",
                     1 if desk.clock_guard and desk.clock_guard.doubt else 0)
        yield _gauge("rfr_desk_database_damaged", "1 once a page of the device database failed SQLCipher's "
                     "integrity check this run.", 1 if desk.db.damage.damaged else 0)
        yield _gauge("rfr_desk_library_damaged", "1 once a page of the library in use failed SQLCipher's integrity "
                     "check this run (reinstall it from central).",
                     1 if desk.library_integrity and desk.library_integrity.damage.damaged else 0)
        beat = desk.health.build()
        yield _gauge("rfr_desk_disk_free_bytes", "Free space where the device database lives.", beat.disk_free_bytes)
        yield _gauge("rfr_desk_disk_total_bytes", "Size of that file system.", beat.disk_total_bytes)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _timestamp(iso: str | None) -> float:
    try:
        moment = datetime.fromisoformat(str(iso))
    except ValueError:
        return math.nan
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _oldest_pending_age(desk: Desk) -> float:
    pending = desk.outbox.pending(limit=1)
    if not pending:
        return 0.0
    occurred = _timestamp(AuditEvent.from_bytes(pending[0].payload).occurred_at)
    return math.nan if math.isnan(occurred) else max(0.0, time.time() - occurred)
