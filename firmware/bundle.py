"""Release bundles: one deterministic ``.tar.gz`` holding everything a slot needs, described by manifest.json.

Layout inside the archive::

    manifest.json                          format, version, min_from, sha256 and size of every other file
    wheels/custody_rfr-*.whl               the appliance (and shared packages) as wheel(s)
    models/manifests/*.toml                which model files, with their sha256, the release expects
    systemd/*.service, *.timer             the units this release was tested with
    schema/appliance-settings.schema.json  JSON schema of the appliance settings file

The archive is byte-for-byte reproducible from the same inputs (sorted
entries, fixed mtime, owner and modes, gzip without a timestamp), so two
people building the same release can compare digests before signing. TUF
authenticates the archive as a whole; the manifest lets the agent re-check
every extracted file and refuse anything the manifest does not list.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from firmware.errors import BundleError
from firmware.version import Version

FORMAT = 1
MANIFEST = "manifest.json"
FIXED_MTIME = 315532800  # 1980-01-01, the earliest time a zip (wheel) can hold
_TOP_LEVEL = ("wheels", "models", "systemd", "schema")


def bundle_name(version: Version) -> str:
    """The target name a release is published under."""
    return f"custody-rfr-appliance-{version}.tar.gz"


@dataclass(frozen=True)
class BundleManifest:
    """What a bundle claims to contain; the signed TUF custom metadata repeats version and min_from."""

    version: Version
    min_from: Version | None
    files: dict[str, str]  # relative posix path -> sha256

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "version": str(self.version),
               "min_from": str(self.min_from) if self.min_from else None,
               "files": {path: {"sha256": digest} for path, digest in sorted(self.files.items())}}
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> BundleManifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise BundleError(f"manifest.json has format {doc.get('format')!r}; this agent reads {FORMAT}.")
            files = {str(p): str(v["sha256"]) for p, v in doc["files"].items()}
            return cls(Version(doc["version"]), Version(doc["min_from"]) if doc.get("min_from") else None, files)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BundleError(f"manifest.json is malformed ({e}); the bundle was not built by firmware.release.") from e

    @property
    def wheels(self) -> list[str]:
        return sorted(p for p in self.files if p.startswith("wheels/") and p.endswith(".whl"))


def _check_member_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in (*_TOP_LEVEL, MANIFEST):
        raise BundleError(f"bundle entry {name!r} is outside the bundle layout; refusing it.")
    return str(path)


def write_bundle(out: Path, version: Version, min_from: Version | None, files: dict[str, bytes]) -> BundleManifest:
    """Write ``files`` (relative path -> content) and their manifest as a reproducible tar.gz at ``out``."""
    for name in files:
        _check_member_name(name)
    manifest = BundleManifest(version, min_from, {n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    entries = {MANIFEST: manifest.to_bytes(), **files}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(entries[name]), FIXED_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(entries[name]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(packed.getvalue())
    return manifest


def extract_bundle(archive: Path, dest: Path, expected_version: Version | None = None) -> BundleManifest:
    """Unpack ``archive`` into the empty folder ``dest``, checking every file against manifest.json.

    Refuses links, devices, names outside the layout, files the manifest does
    not list or lists with another digest, and a manifest whose version is not
    the signed one. A refusal leaves ``dest`` partly written: callers extract
    into a slot that is not marked complete.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            by_name = {}
            for m in members:
                if not m.isfile():
                    raise BundleError(f"bundle entry {m.name!r} is not a regular file; refusing the bundle.")
                by_name[_check_member_name(m.name)] = m
            if MANIFEST not in by_name:
                raise BundleError("the bundle has no manifest.json; it was not built by firmware.release.")
            manifest = BundleManifest.from_bytes(_read(tar, by_name[MANIFEST]))
            if expected_version is not None and manifest.version != expected_version:
                raise BundleError(f"the bundle's manifest says version {manifest.version}, "
                                  f"but central signed it as {expected_version}.")
            extra = set(by_name) - set(manifest.files) - {MANIFEST}
            missing = set(manifest.files) - set(by_name)
            if extra or missing:
                raise BundleError(f"bundle files differ from its manifest (extra {sorted(extra)}, "
                                  f"missing {sorted(missing)}).")
            for name, member in sorted(by_name.items()):
                data = _read(tar, member)
                if name != MANIFEST and hashlib.sha256(data).hexdigest() != manifest.files[name]:
                    raise BundleError(f"{name} in the bundle does not match its manifest digest.")
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise BundleError(f"{archive.name} is not a readable bundle ({e}).") from e
    return manifest


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:
        raise BundleError(f"bundle entry {member.name!r} cannot be read.")
    return fh.read()
