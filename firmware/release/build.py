"""Build a release bundle from a checkout: the appliance wheel, model manifests, systemd units, settings schema.

The settings schema is produced by a separate ``python -c`` process because
firmware must not import the appliance: the agent that rolls a release back
cannot share code with the release it is rolling back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from firmware.bundle import BundleManifest, bundle_name, write_bundle
from firmware.errors import ReleaseError
from firmware.version import Version

PROJECT_DIR = Path(__file__).resolve().parents[2]
UNITS_DIR = Path(__file__).resolve().parents[1] / "systemd"
SCHEMA_NAME = "schema/appliance-settings.schema.json"
_NOT_SOURCE = (".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
               "node_modules", "tests", "bench")
_SCHEMA_CODE = ("import json; from appliance.settings import ApplianceSettings; "
                "print(json.dumps(ApplianceSettings.model_json_schema(), indent=2, sort_keys=True))")


def _run(cmd: list[str], what: str, cwd: Path, timeout: float = 600) -> str:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ReleaseError(f"Could not {what}: {e}") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ReleaseError(f"Could not {what} (exit {done.returncode}): {tail[0]}")
    return done.stdout


def build_wheel(project_dir: Path = PROJECT_DIR, python: str = sys.executable) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the checkout (offline; timestamps pinned by SOURCE_DATE_EPOCH).

    The copy leaves out build/ and egg-info: setuptools reuses a stale build/lib,
    which would put modules deleted from the checkout into the release.
    """
    out = Path(tempfile.mkdtemp(prefix="rfr-wheel-"))
    source = out / "src"
    shutil.copytree(project_dir, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    _run([python, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(out)],
         "build the appliance wheel", cwd=source)
    wheels = sorted(out.glob("*.whl"))
    if not wheels:
        raise ReleaseError("pip wheel produced no wheel; check pyproject.toml.")
    return wheels[0]


def settings_schema(project_dir: Path = PROJECT_DIR, python: str = sys.executable) -> bytes:
    """ApplianceSettings' JSON schema, from a child process (firmware never imports appliance)."""
    return _run([python, "-c", _SCHEMA_CODE], "export the appliance settings schema", cwd=project_dir).encode()


def collect(project_dir: Path, wheels: list[Path], schema: bytes, units_dir: Path = UNITS_DIR) -> dict[str, bytes]:
    """The bundle's files by their path inside the bundle."""
    files: dict[str, bytes] = {f"wheels/{w.name}": w.read_bytes() for w in wheels}
    manifests = sorted((project_dir / "models" / "manifests").glob("*.toml"))
    files.update({f"models/manifests/{m.name}": m.read_bytes() for m in manifests})
    units = sorted(p for p in units_dir.iterdir() if p.suffix in (".service", ".timer"))
    if not units:
        raise ReleaseError(f"No systemd units in {units_dir}.")
    files.update({f"systemd/{u.name}": u.read_bytes() for u in units})
    files[SCHEMA_NAME] = schema
    return files


def build_bundle(version: Version, out_dir: Path, *, min_from: Version | None = None,
                 project_dir: Path = PROJECT_DIR, wheels: list[Path] | None = None,
                 schema: bytes | None = None) -> tuple[Path, BundleManifest]:
    """Build ``out_dir/custody-rfr-appliance-X.Y.Z.tar.gz``; prebuilt ``wheels``/``schema`` skip those steps."""
    if min_from is not None and min_from >= version:
        raise ReleaseError(f"--min-from {min_from} must be older than the release {version}.")
    wheels = wheels if wheels is not None else [build_wheel(project_dir)]
    schema = schema if schema is not None else settings_schema(project_dir)
    out = Path(out_dir) / bundle_name(version)
    manifest = write_bundle(out, version, min_from, collect(project_dir, wheels, schema))
    return out, manifest
