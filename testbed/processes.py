"""Stopping a service a test or benchmark started, whether it shuts down cleanly or not."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; close the stderr pipe the fixtures read start-up errors from."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process and process.stderr:
        process.stderr.close()
