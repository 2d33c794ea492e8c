"""Keep the fleet told: retain the newest announcement on MQTT and keep the timestamp fresh.

``python -m central.publish publish`` writes ``announcement.json`` into the
repository; the running central server (which owns the MQTT link) notices the
change and publishes it retained, signed with central's fleet-command key
(desks act on no unsigned announcement), so a desk that connects later learns
of the newest version at once. The same thread re-signs the timestamp role well
inside its expiry: without that every desk would refuse updates (a freeze)
within a day. When central's fleet-command key is rotated (``central.fleet.command_key``: the key follows its
file), the announcement is signed and retained again with the new key, which the rotated desks trust.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.publish.repository import PublishError, TufRepository
from central.publish.settings import PublishSettings
from core.errors import WireFormatError
from core.fleet import key_fingerprint
from core.library_announce import LibraryAnnouncement
from core.topics import library_announce_topic

logger = logging.getLogger(__name__)

ANNOUNCEMENT_FILE = "announcement.json"


class Announcer:
    def __init__(self, repo_dir: Path, settings: PublishSettings, publish: Callable[[str, bytes], None], *,
                 command_key: Ed25519PrivateKey, check_interval_s: float = 2.0,
                 refresh_interval_s: float = 3600.0) -> None:
        self._command_key = command_key
        self._repo_dir = Path(repo_dir)
        self._settings = settings
        self._publish = publish
        self._check_interval_s = check_interval_s
        self._refresh_interval_s = refresh_interval_s
        self._last: bytes | None = None
        self._last_signer: str | None = None  # the fingerprint of the key the retained announcement is signed with
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="library-announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check_once(self) -> bool:
        """Publish the announcement if it changed since the last call; True when one was published."""
        path = self._repo_dir / ANNOUNCEMENT_FILE
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return False
        signer = key_fingerprint(self._command_key.public_key())
        if payload == self._last and signer == self._last_signer:
            return False
        try:
            LibraryAnnouncement.from_bytes(payload)
        except WireFormatError as e:
            logger.error("not announcing %s: %s", path, e)
            self._last = payload
            return False
        self._publish(library_announce_topic(), LibraryAnnouncement.seal(payload, self._command_key))
        self._last, self._last_signer = payload, signer
        logger.info("announced %s", payload.decode(errors="replace"))
        return True

    def refresh_once(self) -> list[str]:
        try:
            return TufRepository(self._repo_dir, self._settings).refresh()
        except PublishError as e:
            logger.error("could not re-sign the library repository: %s", e)
            return []

    def _run(self) -> None:
        next_refresh = 0.0
        elapsed = 0.0
        while not self._stop.is_set():
            self.check_once()
            if elapsed >= next_refresh:
                signed = self.refresh_once()
                if signed:
                    logger.info("re-signed %s", ", ".join(signed))
                next_refresh = elapsed + self._refresh_interval_s
            self._stop.wait(self._check_interval_s)
            elapsed += self._check_interval_s
