"""The desk's health heartbeat: what central's fleet page needs to spot a desk in trouble.

Built from what the desk can observe cheaply (disk and memory, the outbox, the library in
use and every library held, when central last acknowledged anything, how its keys are protected) and published by
the MQTT sender thread as a ``senders`` hook every ``interval_s``. It carries no case,
account or biometric data.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from appliance.comms.mqtt import Publish
from appliance.services.library import LibraryHolder, LibrarySet
from appliance.storage.outbox import Outbox
from core.fleet import KEY_PROTECTION_INSECURE, Heartbeat
from core.topics import health_topic
from devicekeys.errors import KeyProtectionError
from devicekeys.keys import MODE_FILE, MODE_TPM, protection

logger = logging.getLogger(__name__)

_MEMINFO = Path("/proc/meminfo")


def software_version() -> str:
    """The installed package's version (what the fleet page compares between desks)."""
    try:
        return metadata.version("custody-rfr")
    except metadata.PackageNotFoundError:
        return "unknown"


def memory() -> tuple[int | None, int | None]:
    """(available, total) bytes from /proc/meminfo; None where the kernel does not say."""
    values: dict[str, int] = {}
    try:
        for line in _MEMINFO.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemAvailable", "MemTotal"):
                values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None, None
    return values.get("MemAvailable"), values.get("MemTotal")


def key_protection(paths: Sequence[Path], insecure: bool = False) -> str:
    """"tpm" only when every device key is sealed: one plaintext key is enough to read the desk's data.

    "insecure" whenever the library key came from a plain key file (``[library] insecure_plain_key_file``):
    worse than "file", because that key is the same on every desk given it and opens the library anywhere.
    """
    if insecure:
        return KEY_PROTECTION_INSECURE
    modes = []
    for path in paths:
        try:
            modes.append(protection(path).mode)
        except KeyProtectionError:
            continue  # not made yet (e.g. no TLS key on a development desk): nothing to protect
    return MODE_TPM if modes and all(m == MODE_TPM for m in modes) else MODE_FILE


class HealthReporter:
    """Builds heartbeats and, as a sender hook, publishes one every ``interval_s`` while connected."""

    def __init__(self, device_id: str, data_dir: Path, outbox: Outbox, library: LibraryHolder | LibrarySet, *,
                 interval_s: float, key_paths: Sequence[Path], last_ack_at: Callable[[], float | None],
                 insecure_keys: Callable[[], bool] = lambda: False,
                 clock_offset_s: Callable[[], float | None] = lambda: None) -> None:
        self._device_id = device_id
        self._topic = health_topic(device_id)
        self._data_dir = Path(data_dir)
        self._outbox = outbox
        self._library = library
        self.interval_s = interval_s
        self._key_paths = list(key_paths)
        self._insecure_keys = insecure_keys
        self._last_ack_at = last_ack_at
        self._clock_offset_s = clock_offset_s
        self._version = software_version()
        self._next = 0.0
        self.sent = 0

    def build(self) -> Heartbeat:
        disk = shutil.disk_usage(self._data_dir)
        available, total = memory()
        last_ack = self._last_ack_at()
        # Every library held (central's fleet page shows which desks still hold a retired one); the provisioned
        # library's version stays in library_version for central's older pages.
        if isinstance(self._library, LibrarySet):
            held = tuple(self._library.held())
            snapshot = self._library.snapshot(self._library.primary_id)
            if snapshot is None and held:
                snapshot = self._library.snapshot(held[0][0])
        else:
            snapshot, held = self._library.current, ()
        return Heartbeat(
            device_id=self._device_id, sent_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            interval_s=self.interval_s, software_version=self._version,
            library_version=snapshot.version if snapshot else None, libraries=held,
            embedder_id=snapshot.embedder_id if snapshot else None, disk_free_bytes=disk.free,
            disk_total_bytes=disk.total,
            memory_available_bytes=available, memory_total_bytes=total, outbox_depth=self._outbox.depth(),
            since_last_sync_s=None if last_ack is None else round(max(0.0, time.time() - last_ack), 3),
            clock_offset_s=self._clock_offset_s(),
            key_protection=key_protection(self._key_paths, self._insecure_keys()))

    def send(self, publish: Publish, session: int) -> None:
        """The ``senders`` hook: publish when due; a failed publish is tried again on the next turn."""
        now = time.monotonic()
        if now < self._next:
            return
        if publish(self._topic, self.build().to_bytes()):
            self.sent += 1
            self._next = now + self.interval_s
