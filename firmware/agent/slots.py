"""The two install slots on disk: fill one from a bundle, check it, tell complete slots from partial ones.

A slot is ``slots/<a|b>/`` holding ``bundle/`` (the extracted, digest-checked
bundle), ``venv/`` (a virtualenv with the release's wheels) and ``slot.json``.
``slot.json`` is written last, atomically: a slot without it is partial and
is never switched to or rolled back to, whatever else is in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from firmware.agent.config import AgentConfig
from firmware.bundle import BundleManifest
from firmware.errors import FirmwareError, HealthCheckError, SlotError
from firmware.fsutil import atomic_write, fsync_dir
from firmware.version import Version

MARKER = "slot.json"


def slot_dir(state_dir: Path, slot: str) -> Path:
    return state_dir / "slots" / slot


def slot_python(state_dir: Path, slot: str) -> Path:
    return slot_dir(state_dir, slot) / "venv" / "bin" / "python"


def slot_version(state_dir: Path, slot: str) -> Version | None:
    """The version a complete slot holds; None when the slot is partial or empty."""
    try:
        doc = json.loads((slot_dir(state_dir, slot) / MARKER).read_bytes())
        return Version(doc["version"])
    except (OSError, ValueError, KeyError, FirmwareError):
        return None


def clear(state_dir: Path, slot: str) -> None:
    """Empty a slot: drop its marker first (so it is partial at once), then the rest."""
    path = slot_dir(state_dir, slot)
    (path / MARKER).unlink(missing_ok=True)
    if path.exists():
        fsync_dir(path)
        trash = path.with_name(f".{slot}.trash")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    path.mkdir(parents=True)


def _run(cmd: list[str], what: str, cwd: Path, timeout: float) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlotError(f"Could not {what}: {e}") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SlotError(f"Could not {what} (exit {done.returncode}): {tail[0]}")


def make_venv(config: AgentConfig, slot: Path, manifest: BundleManifest) -> None:
    """A venv over the runtime interpreter with the bundle's wheels, installed offline without dependencies."""
    venv = slot / "venv"
    _run([str(config.runtime_python), "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
         "create the slot's virtualenv", slot, 120)
    if config.extra_site_packages:
        site = next((venv / "lib").glob("python3*/site-packages"))
        # Plain path lines: .pth files inside these folders (e.g. a developer's editable install) are not run.
        (site / "_custody_rfr_runtime.pth").write_text("".join(f"{p}\n" for p in config.extra_site_packages))
    wheels = [str(slot / "bundle" / w) for w in manifest.wheels]
    if not wheels:
        raise SlotError("The bundle holds no wheel to install.")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
          "--no-index", "--no-compile", "--disable-pip-version-check", "-q", *wheels],
         "install the release's wheels", slot, 300)


def mark_complete(state_dir: Path, slot: str, version: Version, bundle_sha256: str) -> None:
    atomic_write(slot_dir(state_dir, slot) / MARKER,
                 json.dumps({"version": str(version), "bundle_sha256": bundle_sha256}, sort_keys=True).encode())


def health_check(config: AgentConfig, state_dir: Path, slot: str, version: Version) -> None:
    """Run every health command in the slot; the first failure raises with its last line of output."""
    path = slot_dir(state_dir, slot)
    python = slot_python(state_dir, slot)
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(path / "venv")}
    env.pop("PYTHONPATH", None)
    for template in config.health_commands:
        cmd = [part.format(python=python, slot=path, version=version) for part in template]
        # Name the command itself in messages, not a wrapper's options (systemd-run ... -- python -m ...).
        shown = cmd[cmd.index("--") + 1:] if "--" in cmd else cmd
        try:
            done = subprocess.run(cmd, cwd=path, env=env, capture_output=True, text=True,
                                  timeout=config.health_timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HealthCheckError(f"Health check {shown[1:3]} of version {version} did not run: {e}") from e
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise HealthCheckError(f"Version {version} failed its health check {' '.join(shown[1:4])} "
                                   f"(exit {done.returncode}): {tail[0]}")
