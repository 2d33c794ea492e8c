"""What the fleet page flags for each registered desk, from its newest heartbeat (no I/O but reading the
shipped model manifests once).

* stale: no heartbeat for more than ``stale_after`` of its own intervals (or never one);
* unhealthy: less than ``min_free_disk`` of its disk free, or keys in files instead of the TPM;
* old library: below the newest library central publishes (its TUF repository when configured,
  else the newest any desk reports);
* clock skew: the desk's clock differs from central's by more than ``max_clock_offset_s`` (its audit times and
  retention deadlines are then doubtful; the desk holds its retention purge back while it knows);
* revoked: withdrawn by the team (its messages are refused);
* evaluation model: its face model's licence is evaluation-grade (``central.fleet.model_grade``), not for
  live decisions (a model central has no manifest for is not flagged: it cannot tell).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from central.fleet.model_grade import EVALUATION, grade_of
from core.fleet import KEY_PROTECTION_INSECURE

STALE_AFTER_INTERVALS = 3
MIN_FREE_DISK = 0.10
MAX_CLOCK_OFFSET_S = 120.0


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    last_seen: str | None
    health: Mapping[str, Any] | None
    revoked: Mapping[str, Any] | None
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.flags


def newest_fleet_library(latest: Mapping[str, Mapping[str, Any]]) -> int | None:
    versions = [int(h["library_version"]) for h in latest.values() if h.get("library_version") is not None]
    return max(versions, default=None)


def device_status(device_id: str, health: Mapping[str, Any] | None, revoked: Mapping[str, Any] | None, *,
                  now: datetime, newest_library: int | None, stale_after: int = STALE_AFTER_INTERVALS,
                  min_free_disk: float = MIN_FREE_DISK) -> DeviceStatus:
    flags: list[str] = []
    reasons: list[str] = []
    if revoked is not None:
        flags.append("revoked")
        reasons.append(f"revoked {str(revoked['revoked_at'])[:19]} by {revoked['revoked_by']}: {revoked['reason']}")
    if health is None:
        if revoked is None:
            flags.append("stale")
            reasons.append("no heartbeat received yet")
        return DeviceStatus(device_id, None, None, revoked, flags, reasons)
    age = (now - datetime.fromisoformat(str(health["received_at"]))).total_seconds()
    if revoked is None and age > stale_after * float(health["interval_s"]):
        flags.append("stale")
        reasons.append(f"last heartbeat {int(age)} s ago (expected every {float(health['interval_s']):g} s)")
    total = int(health["disk_total_bytes"])
    free = int(health["disk_free_bytes"]) / total if total else 0.0
    unhealthy = []
    if free < min_free_disk:
        unhealthy.append(f"disk {free:.0%} free")
    if health["key_protection"] == KEY_PROTECTION_INSECURE:
        unhealthy.append("library key given as a plain key file (insecure setting)")
    elif health["key_protection"] != "tpm":
        unhealthy.append("keys in files, not sealed to a TPM")
    if unhealthy:
        flags.append("unhealthy")
        reasons.extend(unhealthy)
    offset = health.get("clock_offset_s")
    if offset is not None and abs(float(offset)) > MAX_CLOCK_OFFSET_S:
        flags.append("clock skew")
        reasons.append(f"desk clock {float(offset):+.0f} s from central's (more than {MAX_CLOCK_OFFSET_S:.0f} s)")
    version = health.get("library_version")
    if newest_library is not None and (version is None or int(version) < newest_library):
        flags.append("old library")
        reasons.append(f"library {version} (newest {newest_library})")
    model = health.get("embedder_id")
    grade = grade_of(model)
    if grade == EVALUATION:
        flags.append("evaluation model")
        reasons.append(f"face model {model} is evaluation-grade: not for live custody decisions")
    return DeviceStatus(device_id, str(health["received_at"]), health, revoked, flags, reasons)


def fleet_status(devices: list[str], latest: Mapping[str, Mapping[str, Any]],
                 revoked: Mapping[str, Mapping[str, Any]], *, now: datetime, published_library: int | None,
                 stale_after: int = STALE_AFTER_INTERVALS, min_free_disk: float = MIN_FREE_DISK) -> list[DeviceStatus]:
    """Every registered desk, with flags; ``published_library`` None falls back to the fleet's newest."""
    newest = published_library if published_library is not None else newest_fleet_library(latest)
    return [device_status(d, latest.get(d), revoked.get(d), now=now, newest_library=newest,
                          stale_after=stale_after, min_free_disk=min_free_disk) for d in devices]
