"""Say what a library, delta or desk configuration file is, from the file itself, for its signed target metadata.

The version, face model and content digest come from opening the file with
the library key, not from the command line, so a mistyped version cannot be
signed into the repository.
"""

from __future__ import annotations

from pathlib import Path

from core.desk_config import ConfigTargetInfo
from core.keywrap import key_id
from core.library_announce import LibraryTargetInfo
from library.delta import read_delta_info
from library.digest import content_digest
from library.snapshot import Snapshot


def describe_full(path: Path, key: bytes) -> LibraryTargetInfo:
    """A full library snapshot: what it holds and the digest of that content."""
    snapshot = Snapshot.open(path, key)
    try:
        return LibraryTargetInfo(kind="full", library_version=snapshot.version, embedder_id=snapshot.embedder_id,
                                 result_digest=content_digest(snapshot), key_id=key_id(key))
    finally:
        snapshot.close()


def describe_delta(path: Path, key: bytes) -> LibraryTargetInfo:
    """A delta: the base it applies to and the result it yields, each by version and content digest."""
    info = read_delta_info(path, key)
    return LibraryTargetInfo(kind="delta", library_version=info.result_version, embedder_id=info.embedder_id,
                             result_digest=info.result_digest, key_id=key_id(key),
                             base_version=info.base_version, base_digest=info.base_digest)


def describe_config(path: Path) -> ConfigTargetInfo:
    """A desk configuration: parsed with the desk's own strict schema first, so central never signs one
    that desks would refuse; version and digest come from the document."""
    return describe_config_bytes(Path(path).read_bytes())


def describe_config_bytes(document: bytes) -> ConfigTargetInfo:
    """The same, for a document in memory; the digest is of the plaintext the desk checks after opening it."""
    return ConfigTargetInfo.of(document)
