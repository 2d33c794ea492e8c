"""The lock that says the desk service is running on this device's data directory.

The desk purges viable matches past their retention period by itself, at start and hourly
(``appliance.services.retention``). ``python -m appliance retention purge`` does the same once by hand,
and must not run beside the service: both would find the same cases due and record each deletion
twice. So the service holds this lock and the command refuses while it is held. (The audit chain
itself no longer needs it: the outbox reads the chain's head inside each append's write transaction.)
"""

from __future__ import annotations

import fcntl
import os
import weakref
from pathlib import Path

LOCK_NAME = "service.lock"


class ServiceLock:
    """An advisory lock on ``data_dir/service.lock``, held by the running desk service.

    The file holds nothing; the lock ends with the process (or ``release``).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None
        self._finalizer: weakref.finalize | None = None

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if another holder has it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)
        return True

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # closes the descriptor, which releases the lock
        self._fd, self._finalizer = None, None
