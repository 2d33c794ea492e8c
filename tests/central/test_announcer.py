"""Central retains the newest library announcement on MQTT and keeps the timestamp role fresh."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.audit.store import AuditStore
from central.ingest.mqtt import AuditIngest
from central.publish.announcer import ANNOUNCEMENT_FILE, Announcer
from central.publish.repository import init_repository
from central.publish.settings import PublishSettings
from central.settings import CentralMqttSettings
from core.library_announce import LibraryAnnouncement
from core.topics import library_announce_topic
from tests.fleet_key import CENTRAL_PUBLIC, COMMAND_KEY


def test_new_announcement_is_retained_for_desks_that_connect_later(tmp_path, mosquitto):
    repo = init_repository(tmp_path / "repo", tmp_path / "root-keys", PublishSettings())
    store = AuditStore(tmp_path / "central.db")
    ingest = AuditIngest(CentralMqttSettings(host=mosquitto.host, port=mosquitto.port), store,
                         command_key=COMMAND_KEY, client_id="central-announce")
    ingest.start()
    try:
        assert ingest.wait_connected(10)
        announcer = Announcer(repo.repo_dir, PublishSettings(), ingest.publish_retained, command_key=COMMAND_KEY)
        assert announcer.check_once() is False  # nothing published yet
        announcement = LibraryAnnouncement.now(7, "library-v000007.full", "full", "sha256:" + "ab" * 32)
        (repo.repo_dir / ANNOUNCEMENT_FILE).write_bytes(announcement.to_bytes())
        assert announcer.check_once() is True
        assert announcer.check_once() is False  # unchanged: not sent again
        (repo.repo_dir / ANNOUNCEMENT_FILE).write_bytes(b"{not json")
        assert announcer.check_once() is False  # a damaged file is never broadcast

        # A desk connecting afterwards receives the retained announcement at once.
        got: queue.Queue[bytes] = queue.Queue()
        subscribed = threading.Event()
        desk = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        desk.on_message = lambda c, u, msg: got.put(msg.payload)
        desk.on_subscribe = lambda *a: subscribed.set()
        desk.connect(mosquitto.host, mosquitto.port)
        desk.loop_start()
        try:
            desk.subscribe(library_announce_topic(), qos=1)
            assert subscribed.wait(5)
            # The session broker may still hold another test's retained announcement until ours lands.
            deadline = time.monotonic() + 10
            versions = []
            while 7 not in versions and time.monotonic() < deadline:
                try:
                    versions.append(LibraryAnnouncement.from_signed(got.get(timeout=1), CENTRAL_PUBLIC).library_version)
                except queue.Empty:
                    desk.unsubscribe(library_announce_topic())
                    desk.subscribe(library_announce_topic(), qos=1)  # ask again for the retained message
            assert 7 in versions
        finally:
            desk.loop_stop()
            desk.disconnect()
    finally:
        ingest.stop()
        store.close()


def test_a_rotated_command_key_signs_the_retained_announcement_again(tmp_path):
    """After ``rotate-command-key`` replaces the key file, the announcer (following the file) retains the same
    announcement again, signed with the new key the rotated desks trust."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from central.fleet.command_key import FollowedCommandKey
    from tests.fleet_key import write_command_key

    key_path, _ = write_command_key(tmp_path / "keys")
    sent: list[bytes] = []
    (tmp_path / ANNOUNCEMENT_FILE).write_bytes(
        LibraryAnnouncement.now(3, "library-v000003.full", "full", "sha256:" + "cd" * 32).to_bytes())
    announcer = Announcer(tmp_path, PublishSettings(), lambda _topic, payload: sent.append(payload),
                          command_key=FollowedCommandKey(key_path))
    assert announcer.check_once() is True and announcer.check_once() is False
    assert LibraryAnnouncement.from_signed(sent[-1], CENTRAL_PUBLIC).library_version == 3
    new = Ed25519PrivateKey.generate()
    staged = key_path.with_name("staged.pem")
    staged.write_bytes(new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    os.replace(staged, key_path)  # as the rotation switches the key: one rename
    assert announcer.check_once() is True and len(sent) == 2
    assert LibraryAnnouncement.from_signed(sent[-1], new.public_key()).library_version == 3
    assert announcer.check_once() is False
