"""A stand-in appliance process for fault tests: the real audit log, outbox and MQTT sender, no web UI.

``python -m tests.audit_device DATA_DIR DEVICE_ID HOST PORT TOTAL INTERVAL_S`` records search
events until the device's log holds TOTAL events (so a restarted process carries on where the
killed one stopped), printing each seq as it is committed, then keeps sending until terminated. It
trusts the test central's fleet-command key (``tests.fleet_key``) and carries out central's signed resend
requests (``appliance.services.resend``) as a real desk does.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

from appliance.comms.mqtt import CentralLink
from appliance.services.audit import AuditLog
from appliance.services.resend import ResendService
from appliance.settings import DeskMqttSettings
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox
from core.topics import fleet_command_topic
from tests.fleet_key import CENTRAL_PUBLIC


def main(argv: list[str]) -> int:
    data_dir, device_id, host, port, total, interval = argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("appliance.comms.mqtt").setLevel(logging.INFO)  # resends seen: tests wait for one, not sleep
    outbox = Outbox(DeviceDatabase(Path(data_dir)), checkpoint_every=50)
    log = AuditLog(device_id, outbox)
    resend = ResendService(device_id, CENTRAL_PUBLIC, log, outbox, Path(data_dir))
    publisher = CentralLink(DeskMqttSettings(host=host, port=int(port), keepalive_s=5), device_id, outbox,
                            central_key=CENTRAL_PUBLIC, resend_after_s=3.0, checkpoint_idle_s=0.5,
                            handlers={fleet_command_topic(device_id): resend.handle})
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    publisher.start()
    while outbox.head_seq < int(total) and not done.is_set():
        event = log.record("search", "pc-fault", "candidates_shown", candidates=outbox.head_seq % 10)
        print(event.seq, flush=True)
        time.sleep(float(interval))
    print("recorded", flush=True)
    done.wait()
    publisher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
