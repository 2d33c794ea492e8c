"""The image recipe: its plan without network, and (RFR_BUILD_IMAGE=1, root, network) a real debootstrap."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from models.convert import ir_path
from models.manifest import load_manifest, manifest_names
from supply.pinned import load_catalogue

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


def test_plan_seeds_the_model_cache_from_the_hosts_pinned_artifacts(tmp_path: Path) -> None:
    done = _run("--plan", "--bundle", "b.tar.gz", "--release-root", "root.json", "--out", str(tmp_path / "fs"),
                "--model-cache", str(tmp_path / "host-cache"))
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    where, artifacts = lines["cache"].split(": ", 1)
    assert where == f"/usr/share/custody-rfr/cache/artifacts <- {tmp_path / 'host-cache'}/artifacts"
    assert set(artifacts.split()) == {a.filename for a in load_catalogue().values()}
    # Verified and converted inside the tree, with the cache the units point at.
    assert lines["verify"].startswith("RFR_CACHE_DIR=/usr/share/custody-rfr/cache python -m supply.install")
    assert lines["convert"].startswith("RFR_CACHE_DIR=/usr/share/custody-rfr/cache python -m models.convert")


def test_missing_arguments_are_one_line(tmp_path: Path) -> None:
    done = _run("--plan")
    assert done.returncode == 2
    assert done.stderr.strip() == "build-rootfs: give --bundle, --release-root and --out"


def host_wheelhouse(bundle_path: Path, folder: Path) -> Path:
    """The release wheel's pinned dependencies as wheels, resolved by this machine's pip (its index and CA
    settings), built from source where PyPI has no wheel (hnswlib): what ``--wheelhouse`` takes."""
    wheels = folder / "bundle"
    with tarfile.open(bundle_path) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("wheels/")]
        tar.extractall(wheels, members=members, filter="data")
    house = folder / "wheelhouse"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house),
                    *map(str, sorted((wheels / "wheels").glob("*.whl")))], check=True, timeout=1800)
    return house


@pytest.mark.skipif(os.environ.get("RFR_BUILD_IMAGE") != "1" or os.geteuid() != 0,
                    reason="slow (debootstrap from the Debian mirror): set RFR_BUILD_IMAGE=1 and run as root")
def test_rootfs_builds_with_the_appliance_installed_and_units_enabled(bundle, release, tmp_path: Path) -> None:
    out = tmp_path / "rootfs"
    release_bundle = bundle("1.0.0")
    done = _run("--bundle", str(release_bundle), "--release-root", str(release.dir / "metadata" / "1.root.json"),
                "--out", str(out), "--wheelhouse", str(host_wheelhouse(release_bundle, tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "etc/systemd/system/multi-user.target.wants/custody-rfr-appliance.service").is_symlink()
    assert (out / "etc/systemd/system/timers.target.wants/custody-rfr-update.timer").is_symlink()
    assert os.readlink(out / "var/lib/custody-rfr/firmware/current") == "slots/a"
    assert (out / "var/lib/custody-rfr/firmware/slots/a/slot.json").is_file()
    assert str(out) not in Path("/proc/mounts").read_text()  # no /proc (or anything) left mounted in the tree
    # The slot's own interpreter, inside the image, imports the whole desk application and its selftest.
    code = ("import os, appliance.web, appliance.services.selftest, appliance; "
            "print(os.path.realpath(appliance.__file__))")
    slot_python = "/var/lib/custody-rfr/firmware/current/venv/bin/python"
    imported = subprocess.run(["/usr/sbin/chroot", str(out), slot_python, "-c", code], capture_output=True, text=True,
                              check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.startswith("/var/lib/custody-rfr/firmware/slots/a/venv/")
    # Later updates are health-checked with the default command, the selftest (no override in the image).
    assert "health_commands" not in (out / "etc/custody-rfr/update-agent.toml").read_text()
    # The face models are in the image: every shipped manifest's IR, in the read-only cache the units name.
    cache = out / "usr/share/custody-rfr/cache"
    for name in manifest_names():
        xml = ir_path(load_manifest(name), cache / "ir")
        assert xml.is_file() and xml.with_suffix(".bin").is_file(), xml
        assert xml.stat().st_mode & 0o022 == 0 and xml.stat().st_uid == 0
