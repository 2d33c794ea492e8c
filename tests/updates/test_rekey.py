"""Library keys per desk: central wraps the lineage key to each trusted desk, and a revocation re-keys.

A real TUF repository served by central's app, real SQLCipher libraries, central's real registry and
revocation, and two desks with their own X25519 key-wrapping keys. After one desk is revoked, the next
publication must be under a new content key that only the other desk receives: the revoked desk's key
(its old content key and its key-wrapping key) opens nothing published from then on.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central.fleet.registry_store import RegistryStore
from central.fleet.revoke import revoke_device
from central.publish.keys import publish_library, wrap_for_desk
from central.publish.repository import PublishError
from core.keywrap import KeysDocument, UnwrapError, key_id, keys_target_name, public_key_hex, unwrap
from library.delta import make_delta
from library.errors import SnapshotKeyError
from library.snapshot import Snapshot, read_key_file, write_key_file
from tests.updates.test_updater import make_desk


def register(registry: RegistryStore, desk) -> None:
    registry.register_device(desk.updater._keys.device_id, "00" * 32,
                             wrap_public_key_hex=public_key_hex(desk.updater._keys.private.public_key()))


@pytest.fixture
def fleet(tmp_path, central, make_library, library_key):
    """Central's registry with two provisioned desks on library v1 (each given v1's key wrapped to it)."""
    key_file = tmp_path / "central-builds" / "lineage.key"
    write_key_file(key_file, library_key)
    registry = RegistryStore(central.database)
    desks = {}
    for name in ("desk-keep", "desk-stolen"):
        desks[name] = make_desk(tmp_path / name, central, library_key, make_library(1), device_id=name)
        register(registry, desks[name])
    publish_library(central.repo, registry, make_library(1), "full", key_file, "national")
    yield registry, desks, key_file
    registry.close()


def test_each_desk_gets_the_key_wrapped_to_itself_and_a_new_desk_joins_the_keys_target(
        fleet, central, library_key, make_library):
    registry, desks, key_file = fleet
    name = keys_target_name(key_id(library_key))
    document = KeysDocument.from_bytes(central.repo.target_path(name).read_bytes())
    assert sorted(document.wrapped) == ["desk-keep", "desk-stolen"]
    assert library_key not in central.repo.target_path(name).read_bytes()
    keep = desks["desk-keep"].updater._keys
    assert unwrap(document.for_desk("desk-keep"), keep.private, desk_id="desk-keep",
                  library_id="national") == library_key
    with pytest.raises(UnwrapError):  # another desk's entry does not open with this desk's key
        unwrap(document.wrapped["desk-stolen"], keep.private, desk_id="desk-stolen", library_id="national")
    assert registry.revoked_holders(key_id(library_key)) == []
    with pytest.raises(PublishError, match="no key-wrapping key registered"):
        wrap_for_desk(registry, "desk-unknown", library_key, "national")
    newcomer = X25519PrivateKey.generate()
    registry.register_device("desk-new", "11" * 32, wrap_public_key_hex=public_key_hex(newcomer.public_key()))
    publication = publish_library(central.repo, registry, make_library(2), "full", key_file, "national")
    assert publication.rekeyed_from is None and publication.keys_target == name  # same key, list replaced
    document = KeysDocument.from_bytes(central.repo.target_path(name).read_bytes())
    assert sorted(document.wrapped) == ["desk-keep", "desk-new", "desk-stolen"]
    assert unwrap(document.for_desk("desk-new"), newcomer, desk_id="desk-new", library_id="national") == library_key


def test_after_a_revocation_the_next_publication_is_re_keyed_and_only_trusted_desks_open_it(
        fleet, central, make_library, library_key, tmp_path):
    registry, desks, key_file = fleet
    keep, stolen = desks["desk-keep"], desks["desk-stolen"]
    result = revoke_device(registry, "desk-stolen", revoked_by="Sgt Test", reason="stolen", command_key=None,
                           send=None, pki=None)
    assert "re-keys" in result.summary()
    assert registry.revoked_holders(key_id(library_key)) == ["desk-stolen"]

    # A delta cannot carry a re-key (its base is under the old key): refused, nothing published.
    delta = tmp_path / "1-2.delta"
    base, new = Snapshot.open(make_library(1), library_key), Snapshot.open(make_library(2), library_key)
    make_delta(base, new, delta, library_key)
    base.close()
    new.close()
    published = set(central.repo.target_files())
    with pytest.raises(PublishError, match="re-key needs a full library"):
        publish_library(central.repo, registry, delta, "delta", key_file, "national")
    assert set(central.repo.target_files()) == published and read_key_file(key_file) == library_key

    publication = publish_library(central.repo, registry, make_library(2), "full", key_file, "national")
    new_key = read_key_file(key_file)
    assert publication.rekeyed_from == key_id(library_key) and publication.info.key_id == key_id(new_key) != \
        key_id(library_key)
    assert publication.recipients == ["desk-keep"]
    assert read_key_file(key_file.with_name(f"lineage.key.retired-{key_id(library_key)}")) == library_key

    # The revoked desk's old content key does not open the new version as served...
    served = central.repo.target_path("library-v000002.db")
    with pytest.raises(SnapshotKeyError):
        Snapshot.open(served, library_key).close()
    # ...and its key-wrapping key unwraps nothing in the new key's list.
    document = KeysDocument.from_bytes(central.repo.target_path(keys_target_name(key_id(new_key))).read_bytes())
    assert list(document.wrapped) == ["desk-keep"]
    with pytest.raises(UnwrapError, match="not wrapped for desk-stolen"):
        document.for_desk("desk-stolen")
    with pytest.raises(UnwrapError):
        unwrap(document.wrapped["desk-keep"], stolen.updater._keys.private, desk_id="desk-keep",
               library_id="national")

    # The trusted desk fetches the signed keys target, unwraps the new key and installs v2.
    result = keep.updater.check_now()
    assert (result.outcome, result.installed_version) == ("installed", 2), result
    keep.assert_serving(2)
    assert keep.store.current_key_id() == key_id(new_key)
    # The revoked desk (offline, never wiped) is refused with a reason and keeps searching v1.
    refused = stolen.updater.check_now()
    assert (refused.outcome, refused.reason) == ("refused", "library_key_unavailable"), refused
    assert "was not wrapped for desk-stolen" in refused.message
    stolen.assert_serving(1)
    assert stolen.events("library_update_refused")[-1].details["reason"] == "library_key_unavailable"

    # The trusted desk reopens its store after a restart with the unwrapped key it kept, wrapped, on disk.
    again = make_desk(tmp_path / "desk-keep", central, library_key, make_library(1), device_id="desk-keep",
                      install=False)
    assert again.holder.current.version == 2


def test_a_second_library_is_published_under_its_own_name_beside_the_first(fleet, central, make_library):
    """Its target names and signs its library id: the demo's temporary library was refused as "library v1 is
    already published" when the id was left out of the target's description."""
    registry, _desks, key_file = fleet
    publication = publish_library(central.repo, registry, make_library(1), "full", key_file, "op-kestrel")
    assert publication.info.name == "library-op-kestrel-v000001.db"
    published = central.repo.published()
    assert published["library-op-kestrel-v000001.db"].library_id == "op-kestrel"
    assert published["library-v000001.db"].library_id == "national"
