"""The image recipe: its plan without network, and (RFR_BUILD_IMAGE=1, root, network) a real debootstrap."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "firmware" / "image" / "build-rootfs.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True, check=False, timeout=3600)


def test_plan_installs_the_units_enables_appliance_and_timer(tmp_path: Path) -> None:
    done = _run("--plan", "--bundle", "b.tar.gz", "--release-root", "root.json", "--out", str(tmp_path / "fs"))
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["debootstrap"].startswith("--variant=minbase --include=")
    packages = lines["debootstrap"].split("--include=")[1].split()[0].split(",")
    assert {"systemd", "python3", "python3-venv", "tpm2-tools", "cryptsetup"} <= set(packages)
    installed = set(lines["install"].split(" -> ")[0].split())
    assert installed == {p.name for p in (ROOT / "firmware" / "systemd").iterdir()}
    assert lines["enable"].split() == ["custody-rfr-appliance.service", "custody-rfr-update.timer"]


def test_missing_arguments_are_one_line(tmp_path: Path) -> None:
    done = _run("--plan")
    assert done.returncode == 2
    assert done.stderr.strip() == "build-rootfs: give --bundle, --release-root and --out"


@pytest.mark.skipif(os.environ.get("RFR_BUILD_IMAGE") != "1" or os.geteuid() != 0,
                    reason="slow (debootstrap from the Debian mirror): set RFR_BUILD_IMAGE=1 and run as root")
def test_rootfs_builds_with_the_appliance_installed_and_units_enabled(bundle, release, tmp_path: Path) -> None:
    out = tmp_path / "rootfs"
    done = _run("--bundle", str(bundle("1.0.0")), "--release-root", str(release.dir / "metadata" / "1.root.json"),
                "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "etc/systemd/system/multi-user.target.wants/custody-rfr-appliance.service").is_symlink()
    assert (out / "etc/systemd/system/timers.target.wants/custody-rfr-update.timer").is_symlink()
    assert os.readlink(out / "var/lib/custody-rfr/firmware/current") == "slots/a"
    assert (out / "var/lib/custody-rfr/firmware/slots/a/slot.json").is_file()
