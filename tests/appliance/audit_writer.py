"""A second (or third) process appending to a desk's audit log, for the single-writer tests.

``python -m tests.appliance.audit_writer DATA_DIR DEVICE_ID ACTOR COUNT GO_FILE`` opens the device
database with the real outbox, prints ``ready``, waits until GO_FILE exists (so several writers start
together), records COUNT search events as ACTOR a few milliseconds apart (as a desk's actions come, not
in a tight loop), signs the tail and prints ``done``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from appliance.services.audit import AuditLog
from appliance.storage.device_db import DeviceDatabase
from appliance.storage.outbox import Outbox

CHECKPOINT_EVERY = 7  # small, so both writers also sign checkpoints in the middle of each other's appends
PAUSE_S = 0.002


def main(argv: list[str]) -> int:
    data_dir, device_id, actor, count, go = argv
    db = DeviceDatabase(Path(data_dir))
    audit = AuditLog(device_id, Outbox(db, checkpoint_every=CHECKPOINT_EVERY))
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.005)
    for i in range(int(count)):
        audit.record("search", actor, "candidates_shown", candidates=i % 10)
        time.sleep(PAUSE_S)
    audit.checkpoint()
    db.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
