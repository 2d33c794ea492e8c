"""The library content keys this desk can open, kept only as central wrapped them to this desk.

Each key central wrapped for this desk (``core.keywrap.WrappedKey``: from provisioning, or from a
signed ``keys-<key id>.json`` target) is stored as received under ``<data_dir>/library-keys/<key
id>.wrapped``: useless without the desk's key-wrapping key, which is sealed to its TPM
(``devicekeys.wrapping``). Keys are unwrapped into memory when the desk opens and never written
in plain. A plain key file is accepted only through the explicitly insecure setting
``[library] insecure_plain_key_file``; ``insecure`` then says so, and the heartbeat reports it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.settings import ApplianceSettings
from appliance.storage.library_folders import is_destroyed
from core.errors import WireFormatError
from core.keywrap import UnwrapError, WrappedKey, key_id, unwrap
from devicekeys.files import write_private
from devicekeys.tpm import Tpm
from devicekeys.wrapping import exists, load_or_create_wrapping_key
from library.errors import SnapshotKeyError
from library.snapshot import read_key_file
from library.store import LibraryStore

logger = logging.getLogger(__name__)

FOLDER = "library-keys"
_SUFFIX = ".wrapped"


class LibraryKeys:
    """Content keys by key id; ``private`` is the desk's key-wrapping key (None: a desk given only a plain key)."""

    def __init__(self, folder: Path, device_id: str, library_id: str, private: X25519PrivateKey | None) -> None:
        self.folder = Path(folder)
        self.device_id = device_id
        self.library_id = library_id
        self.private = private
        self._keys: dict[str, bytes] = {}
        self.insecure_key_ids: set[str] = set()
        self.provisioned: str | None = None  # the key of the library shipped at provisioning
        if private is not None and self.folder.is_dir():
            for path in sorted(self.folder.glob(f"*{_SUFFIX}")):
                try:
                    self._open(WrappedKey.from_text(path.read_text()))
                except (WireFormatError, UnwrapError, OSError) as e:
                    logger.warning("library key %s does not open on this desk and is ignored: %s", path.name, e)

    @property
    def insecure(self) -> bool:
        """True when a key came from a plain key file (the insecure setting): the heartbeat must say so."""
        return bool(self.insecure_key_ids)

    def _open(self, wrapped: WrappedKey) -> str:
        if self.private is None:
            raise UnwrapError("This desk has no key-wrapping key: run `python -m provisioning device-keygen` "
                              "and register its public half at central.")
        key = unwrap(wrapped, self.private, desk_id=self.device_id, library_id=self.library_id)
        self._keys[wrapped.key_id] = key
        return wrapped.key_id

    def add_wrapped(self, wrapped: WrappedKey, *, keep: bool = True) -> str:
        """Unwrap (refusing a key for another desk, lineage or key) and, with ``keep``, store the wrapped form for
        the next start; returns its key id. The provisioned key is not kept: its file is named in settings."""
        kid = self._open(wrapped)
        path = self.folder / f"{kid}{_SUFFIX}"
        if keep and not path.exists():
            write_private(path, wrapped.to_text().encode() + b"\n")
        return kid

    def add_plain(self, key: bytes) -> str:
        """A key from the insecure plain key file: usable, never stored here, and reported as insecure."""
        kid = key_id(key)
        self._keys[kid] = key
        self.insecure_key_ids.add(kid)
        return kid

    def key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def require(self, kid: str) -> bytes:
        key = self._keys.get(kid)
        if key is None:
            raise UnwrapError(f"This desk holds no library key {kid[:12]}: central has not wrapped it for this desk.")
        return key

    def known(self) -> list[str]:
        return sorted(self._keys)

    def for_current(self, store: LibraryStore) -> bytes:
        """The key the store's current version needs (a version installed before key ids: the provisioned key)."""
        kid = store.current_key_id() or self.provisioned
        if kid is None:
            raise SnapshotKeyError("No library key is configured: set [library] wrapped_key.")
        try:
            return self.require(kid)
        except UnwrapError as e:
            raise SnapshotKeyError(f"{e} The installed library cannot be opened; reinstall it from central.") from e


def read_wrapped_key(path: Path) -> WrappedKey:
    try:
        return WrappedKey.from_text(Path(path).read_text())
    except OSError as e:
        raise SnapshotKeyError(f"The wrapped library key {path} cannot be read ({e.strerror}).") from e
    except (WireFormatError, UnicodeDecodeError) as e:
        raise SnapshotKeyError(f"{path} is not a wrapped library key: {e}") from e


def open_library_keys(settings: ApplianceSettings, tpm: Tpm | None) -> LibraryKeys:
    """The desk's keyring: its key-wrapping key (unsealed once, kept in memory), the keys central wrapped for it,
    and the provisioned library's key from ``[library] wrapped_key`` (or, insecurely, a plain key file)."""
    library, wrapping = settings.library, settings.wrapping_key_path
    private = load_or_create_wrapping_key(wrapping, tpm) if exists(wrapping) else None
    keys = LibraryKeys(settings.data_dir / FOLDER, settings.device_id, library.library_id, private)
    if is_destroyed(settings.library_store_dir, library.library_id):
        return keys  # retired and destroyed with its shipped files: no provisioned key to read
    if library.wrapped_key is not None:
        if private is None:
            raise SnapshotKeyError(f"[library] wrapped_key is set but this desk has no key-wrapping key at {wrapping}: "
                                   "run `python -m provisioning device-keygen` and have central wrap the key again.")
        try:
            keys.provisioned = keys.add_wrapped(read_wrapped_key(library.wrapped_key), keep=False)
        except UnwrapError as e:
            raise SnapshotKeyError(f"The library key in {library.wrapped_key} does not open on this desk: {e}") from e
    elif library.insecure_plain_key_file is not None:
        logger.warning("the library key is a plain file (%s): insecure, reported in the heartbeat",
                       library.insecure_plain_key_file)
        keys.provisioned = keys.add_plain(read_key_file(library.insecure_plain_key_file))
    return keys


class LibraryKeyring:
    """Every library's keys on this desk: one ``LibraryKeys`` per library id, each in its own folder.

    The provisioned library keeps the folder it always had (``data_dir/library-keys``, its keys named in
    settings); every other library's wrapped keys are under ``data_dir/library-keys/<library_id>/``, so a
    library's keys are destroyed with it and never opened for another lineage.
    """

    def __init__(self, provisioned: LibraryKeys) -> None:
        self.provisioned = provisioned
        self.folder = provisioned.folder
        self.device_id = provisioned.device_id
        self.private = provisioned.private
        self._lineages: dict[str, LibraryKeys] = {provisioned.library_id: provisioned}

    @property
    def insecure(self) -> bool:
        return any(keys.insecure for keys in list(self._lineages.values()))

    def folder_of(self, library_id: str) -> Path:
        return self.folder if library_id == self.provisioned.library_id else self.folder / library_id

    def for_library(self, library_id: str) -> LibraryKeys:
        keys = self._lineages.get(library_id)
        if keys is None:
            keys = self._lineages[library_id] = LibraryKeys(self.folder_of(library_id), self.device_id, library_id,
                                                            self.private)
        return keys

    def forget(self, library_id: str) -> list[str]:
        """Drop a destroyed library's keys from memory; returns their key ids (its files are shredded apart)."""
        keys = self._lineages.pop(library_id, None)
        if keys is None:
            return []
        known = keys.known()
        keys._keys.clear()
        if library_id == self.provisioned.library_id:
            self._lineages[library_id] = keys  # the object stays (settings name it), empty
            keys.provisioned = None
        return known

    def wrapped_files(self, library_id: str) -> list[Path]:
        """The wrapped key files of ``library_id`` this desk stored (not the one named in settings)."""
        folder = self.folder_of(library_id)
        return sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []
