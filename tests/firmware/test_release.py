"""Release bundles: reproducible, self-describing, and refused when their contents are not what they list."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from firmware.bundle import extract_bundle, write_bundle
from firmware.errors import BundleError, ReleaseError
from firmware.release.repository import ReleaseRepository
from firmware.version import Version

ROOT = Path(__file__).resolve().parents[2]


def test_bundle_holds_wheel_manifests_units_and_schema(bundle, tmp_path: Path) -> None:
    manifest = extract_bundle(bundle("1.1.0"), tmp_path / "x", expected_version=Version("1.1.0"))
    names = set(manifest.files)
    assert any(n.startswith("wheels/custody_rfr-") for n in names)
    assert "models/manifests/mobilefacenet.toml" in names
    assert {"systemd/custody-rfr-appliance.service", "systemd/custody-rfr-update.timer"} <= names
    assert b'"ApplianceSettings"' in (tmp_path / "x" / "schema" / "appliance-settings.schema.json").read_bytes()
    # The wheel carries every model manifest and the INT8 pins: a desk without them cannot make its face pipeline.
    wheel = next((tmp_path / "x").glob("wheels/custody_rfr-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        packed = set(whl.namelist())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "models" / "manifests").rglob("*") if p.is_file()}
    assert any(name.endswith(".json") for name in shipped)
    assert shipped <= packed, sorted(shipped - packed)


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    files = {"wheels/a.whl": b"wheel", "systemd/u.service": b"[Unit]\n"}
    write_bundle(tmp_path / "1.tar.gz", Version("2.0.0"), None, files)
    write_bundle(tmp_path / "2.tar.gz", Version("2.0.0"), None, dict(reversed(files.items())))
    assert hashlib.sha256((tmp_path / "1.tar.gz").read_bytes()).digest() == \
        hashlib.sha256((tmp_path / "2.tar.gz").read_bytes()).digest()


def test_file_not_matching_the_manifest_is_refused(tmp_path: Path) -> None:
    write_bundle(tmp_path / "b.tar.gz", Version("2.0.0"), None, {"wheels/a.whl": b"wheel"})
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        entries = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    entries["wheels/a.whl"] = b"evil!"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "evil.tar.gz").write_bytes(raw.getvalue())
    with pytest.raises(BundleError, match="does not match its manifest"):
        extract_bundle(tmp_path / "evil.tar.gz", tmp_path / "out")
    with pytest.raises(BundleError, match=r"signed it as 9\.9\.9"):
        extract_bundle(tmp_path / "b.tar.gz", tmp_path / "out2", expected_version=Version("9.9.9"))


def test_publishing_needs_two_release_keys_and_a_newer_version(release, bundle) -> None:
    with pytest.raises(ReleaseError, match="needs 2 different release keys"):
        release.repo.publish(bundle("1.1.0"), Version("1.1.0"), None, release.signers[:1])
    release.publish(bundle("1.1.0"), "1.1.0")
    with pytest.raises(ReleaseError, match="not newer"):
        release.publish(bundle("1.0.5"), "1.0.5")
    assert ReleaseRepository(release.dir).published() == {
        "custody-rfr-appliance-1.1.0.tar.gz": {"version": "1.1.0", "min_from": None}}


def test_cli_builds_and_publishes_with_one_line_each(release, bundle, tmp_path: Path) -> None:
    keys = [str(release.dir.parent / "release-keys" / f"release-{i}.pem") for i in (1, 3)]
    done = subprocess.run([sys.executable, "-m", "firmware.release", "publish", "--repo", str(release.dir),
                           "--bundle", str(bundle("1.3.0", "1.0.0")), "--release-key", keys[0],
                           "--release-key", keys[1]], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("published custody-rfr-appliance-1.3.0.tar.gz (version 1.3.0")
    again = subprocess.run([sys.executable, "-m", "firmware.release", "publish", "--repo", str(release.dir),
                            "--bundle", str(bundle("1.3.0", "1.0.0")), "--release-key", keys[0]],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and again.stderr.startswith("release: ")


def test_version_compare_is_numeric_and_strict() -> None:
    assert Version("1.10.0") > Version("1.9.9")
    for bad in ("v1.0.0", "1.0", "01.0.0", "1.0.0-rc1"):
        with pytest.raises(Exception, match="not a release version"):
            Version(bad)
