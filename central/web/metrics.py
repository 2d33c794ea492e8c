"""Central's Prometheus metrics, read from the database (and the ingest's shared status) at each scrape.

Central's web runs in several gunicorn worker processes and its ingest in the master process (or in other
``python -m central ingest`` processes): counters kept in one web worker's memory would show only what that
worker saw. So every number here is read, when Prometheus asks, from what all processes share: the
database (audit heads, findings, rejections, heartbeats, revocations, refused sign-ins) and the ingest's
status block in shared memory. Whichever worker answers, the scrape is the same. No prometheus multiprocess
files are needed; the cost is a handful of small queries per scrape, each bounded by the number of desks.

Labels: ``device`` (a device id), ``kind`` (a finding's kind), ``reason`` (a sign-in refusal's code) and the
embedder's model ref, through ``webserver.metrics.label_value``: no case id, custody or subject reference,
account name or biometric value ever becomes a label.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from central.accounts.signin_failures import SignInFailureStore
from central.database import SqlStore, StoreError
from central.fleet.health_store import HealthStore
from central.fleet.registry_store import RegistryStore
from central.ingest.status import IngestStatus
from models.manifest import load_manifest, manifest_names
from webserver.metrics import label_value


class AuditReader(SqlStore):
    """Read-only queries over the audit tables ``central.audit.store`` keeps, one connection per worker."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url, schema=lambda _dialect: [], lock_id=772012, error=StoreError, what="audit store")

    def heads(self) -> list[dict[str, Any]]:
        """Each desk's chain head, with the times of its newest stored event (the event at ``max_seq``)."""
        with self._lock:
            return self._rows("SELECT h.device_id, h.contiguous_seq, h.max_seq, h.duplicates, h.reordered,"
                              " e.occurred_utc, e.received_at FROM audit_heads h LEFT JOIN audit_events e"
                              " ON e.device_id = h.device_id AND e.seq = h.max_seq")

    def findings(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._rows("SELECT device_id, kind, COUNT(*) AS n FROM audit_findings GROUP BY device_id, kind")

    def rejections(self) -> int:
        with self._lock:
            return int(self._scalar("SELECT COUNT(*) FROM audit_rejections") or 0)


def model_grades() -> dict[str, str]:
    """Each known model's ref and licence grade, from the manifests shipped with the software."""
    grades: dict[str, str] = {}
    for name in manifest_names():
        manifest = load_manifest(name)
        grades[manifest.ref] = manifest.licence.grade
    return grades


class CentralCollector(Collector):
    """Every central gauge and counter, from the shared stores at scrape time."""

    def __init__(self, audit: AuditReader, health: HealthStore, registry: RegistryStore,
                 sign_ins: SignInFailureStore, ingest: IngestStatus | None) -> None:
        self._audit, self._health, self._registry = audit, health, registry
        self._sign_ins, self._ingest = sign_ins, ingest
        self._grades = model_grades()

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC).timestamp()
        yield from self._ingest_metrics(now)
        yield from self._fleet_metrics(now)
        failures = CounterMetricFamily("rfr_central_signin_failures", "Refused sign-ins to central's web "
                                       "interface, by reason (every web process and restart included).",
                                       labels=["reason"])
        for reason, count in self._sign_ins.counts().items():
            failures.add_metric([label_value(reason)], count)
        yield failures

    def _ingest_metrics(self, now: float) -> Iterator[Metric]:
        if self._ingest is not None:
            yield GaugeMetricFamily("rfr_central_ingest_connected", "1 while the ingest is connected to the broker.",
                                    value=1 if self._ingest.connected else 0)
            yield CounterMetricFamily("rfr_central_ingest_messages_received", "Messages the ingest took from the "
                                      "broker since central started.", value=self._ingest.received)
            yield CounterMetricFamily("rfr_central_ingest_messages_rejected", "Messages the ingest refused since "
                                      "central started (each recorded in audit_rejections).",
                                      value=self._ingest.rejected)
        stored = CounterMetricFamily("rfr_central_ingest_events", "Audit events stored from each desk whose chain "
                                     "verifies without a gap (the head's sequence number).", labels=["device"])
        newest = GaugeMetricFamily("rfr_central_ingest_max_seq", "Highest sequence number stored from each desk "
                                   "(above rfr_central_ingest_events: a gap waiting to fill).", labels=["device"])
        lag = GaugeMetricFamily("rfr_central_ingest_lag_seconds", "How long the desk's newest stored event took to "
                                "reach central: received minus recorded.", labels=["device"])
        quiet = GaugeMetricFamily("rfr_central_ingest_last_event_age_seconds", "Seconds since central stored the "
                                  "desk's newest event.", labels=["device"])
        duplicates = CounterMetricFamily("rfr_central_ingest_duplicates", "Events received again that were already "
                                         "stored (resent after a lost ack).", labels=["device"])
        for head in self._audit.heads():
            device = [label_value(head["device_id"])]
            stored.add_metric(device, int(head["contiguous_seq"]))
            newest.add_metric(device, int(head["max_seq"]))
            duplicates.add_metric(device, int(head["duplicates"]))
            recorded, received = _seconds(head["occurred_utc"]), _seconds(head["received_at"])
            lag.add_metric(device, max(0.0, received - recorded) if not math.isnan(received + recorded) else math.nan)
            quiet.add_metric(device, max(0.0, now - received) if not math.isnan(received) else math.nan)
        yield from (stored, newest, lag, quiet, duplicates)
        findings = GaugeMetricFamily("rfr_central_audit_findings", "Chain findings recorded for each desk, by kind "
                                     "(gap, bad link, conflict, bad checkpoint...): any is for an auditor to look "
                                     "at.", labels=["device", "kind"])
        for row in self._audit.findings():
            findings.add_metric([label_value(row["device_id"]), label_value(row["kind"])], int(row["n"]))
        yield findings
        yield GaugeMetricFamily("rfr_central_ingest_rejections", "Messages refused and recorded in "
                                "audit_rejections (all time).", value=self._audit.rejections())

    def _fleet_metrics(self, now: float) -> Iterator[Metric]:
        revoked = set(self._registry.revocations())
        registered = set(self._registry.registered_devices())
        yield GaugeMetricFamily("rfr_central_devices_registered", "Desks registered (revoked ones included).",
                                value=len(registered))
        yield GaugeMetricFamily("rfr_central_devices_revoked", "Desks revoked.", value=len(revoked & registered))
        families = {
            "age": GaugeMetricFamily("rfr_central_heartbeat_age_seconds", "Seconds since each desk's newest "
                                     "heartbeat reached central.", labels=["device"]),
            "interval": GaugeMetricFamily("rfr_central_heartbeat_interval_seconds", "The heartbeat interval the "
                                          "desk says it keeps (silent for 3 of them: stale).", labels=["device"]),
            "outbox": GaugeMetricFamily("rfr_central_desk_outbox_depth", "Audit events waiting on the desk for "
                                        "central's ack, as its newest heartbeat reported.", labels=["device"]),
            "library": GaugeMetricFamily("rfr_central_desk_library_version", "Library version the desk searches, "
                                         "as its newest heartbeat reported.", labels=["device"]),
            "disk": GaugeMetricFamily("rfr_central_desk_disk_free_ratio", "Free disk on the desk (0 to 1).",
                                      labels=["device"]),
            "clock": GaugeMetricFamily("rfr_central_desk_clock_offset_seconds", "The desk's clock minus "
                                       "central's, as measured from its heartbeat (NaN: not measured).",
                                       labels=["device"]),
            "evaluation": GaugeMetricFamily("rfr_central_desk_evaluation_grade_model", "1 when the desk's face "
                                            "model is evaluation-grade only (not for live use), 0 when deployable.",
                                            labels=["device", "embedder"]),
        }
        for device_id, beat in sorted(self._health.latest_health().items()):
            if device_id in revoked:
                continue  # a withdrawn desk is silent on purpose: no stale alert for it
            device = [label_value(device_id)]
            families["age"].add_metric(device, max(0.0, now - _seconds(beat["received_at"])))
            families["interval"].add_metric(device, float(beat["interval_s"]))
            families["outbox"].add_metric(device, int(beat["outbox_depth"]))
            families["library"].add_metric(device, _number(beat["library_version"]))
            total = beat["disk_total_bytes"] or 0
            families["disk"].add_metric(device, beat["disk_free_bytes"] / total if total else math.nan)
            families["clock"].add_metric(device, _number(beat["clock_offset_s"]))
            embedder = beat["embedder_id"] or "none"
            families["evaluation"].add_metric([*device, label_value(embedder)],
                                              1 if self._grades.get(embedder, "evaluation") == "evaluation" else 0)
        yield from families.values()


def _seconds(iso: object) -> float:
    """UNIX time of a stored ISO moment (NaN when there is none)."""
    if not iso:
        return math.nan
    try:
        moment = datetime.fromisoformat(re.sub(r"Z$", "+00:00", str(iso)))
    except ValueError:
        return math.nan
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _number(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def central_registry(app: Flask, ingest: IngestStatus | None) -> CollectorRegistry:
    """The registry ``/metrics`` serves, over the app's stores plus a reader of the audit tables."""
    database = app.config["DATABASE"]
    reader = AuditReader(database)
    app.extensions["central.metrics_reader"] = reader
    registry = CollectorRegistry()
    registry.register(CentralCollector(reader, app.extensions["central.health_store"],
                                       app.extensions["central.registry"],
                                       app.extensions["central.signin_failures"], ingest))
    return registry
