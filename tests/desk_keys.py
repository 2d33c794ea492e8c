"""Provisioning a test desk's library key the way a real desk gets it: wrapped to its own key-wrapping key.

``device-keygen`` makes the desk's X25519 key in its data folder; central wraps the lineage key to the
public half (``python -m central devices wrap-library-key``). Tests that build desks from the session's
demo library call this for each desk, so no desk is ever given the plain key file.
"""

from __future__ import annotations

from pathlib import Path

from appliance.storage.library_keys import FOLDER, LibraryKeys
from core.keywrap import wrap
from devicekeys.tpm import Tpm
from devicekeys.wrapping import default_path, load_or_create_wrapping_key
from library.snapshot import read_key_file


def provision_library_key(data_dir: Path, device_id: str, key_file: Path, library_id: str = "national",
                          tpm: Tpm | None = None) -> Path:
    """The desk's key-wrapping key (made if missing) and the lineage key wrapped to it; returns the wrapped file."""
    private = load_or_create_wrapping_key(default_path(data_dir), tpm)
    wrapped = wrap(read_key_file(key_file), private.public_key(), desk_id=device_id, library_id=library_id)
    path = Path(data_dir) / "pki" / "library.wrapped"
    path.write_text(wrapped.to_text() + "\n")
    return path


def desk_keyring(root: Path, device_id: str, key: bytes, library_id: str = "national") -> LibraryKeys:
    """A desk's keyring in ``root`` holding ``key`` as its provisioned library key, wrapped to a fresh key-wrapping
    key (what ``open_library_keys`` builds from settings, for tests that wire the updater by hand)."""
    private = load_or_create_wrapping_key(default_path(root), None)
    keys = LibraryKeys(Path(root) / FOLDER, device_id, library_id, private)
    keys.provisioned = keys.add_wrapped(wrap(key, private.public_key(), desk_id=device_id, library_id=library_id),
                                        keep=False)
    return keys
