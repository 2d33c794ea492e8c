"""The envelope format: a content key wrapped to one desk, the keys document, a document sealed to desks."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from core.errors import WireFormatError
from core.keywrap import (
    KeysDocument,
    SealedDocument,
    UnwrapError,
    WrappedKey,
    key_id,
    keys_target_name,
    unwrap,
    validate_library_id,
    wrap,
)

DESKS = {name: X25519PrivateKey.generate() for name in ("desk-a", "desk-b", "desk-c")}


def publics(*names: str):
    return {n: DESKS[n].public_key() for n in names}


def test_a_wrapped_key_opens_only_for_its_desk_lineage_and_key():
    content = secrets.token_bytes(32)
    wrapped = wrap(content, DESKS["desk-a"].public_key(), desk_id="desk-a", library_id="national")
    again = WrappedKey.from_text(wrapped.to_text())
    assert again == wrapped and content not in wrapped.to_bytes()
    assert unwrap(again, DESKS["desk-a"], desk_id="desk-a", library_id="national",
                  expected_key_id=key_id(content)) == content
    with pytest.raises(UnwrapError, match="another key"):
        unwrap(again, DESKS["desk-b"], desk_id="desk-a", library_id="national")  # a stolen blob, another desk's key
    with pytest.raises(UnwrapError, match="wrapped for desk desk-a, not desk-b"):
        unwrap(again, DESKS["desk-a"], desk_id="desk-b", library_id="national")
    with pytest.raises(UnwrapError, match="for library 'national', not 'regional'"):
        unwrap(again, DESKS["desk-a"], desk_id="desk-a", library_id="regional")
    with pytest.raises(UnwrapError, match="not the key"):
        unwrap(again, DESKS["desk-a"], desk_id="desk-a", library_id="national", expected_key_id="0" * 32)


def test_the_ids_are_bound_as_associated_data_so_a_relabelled_blob_does_not_open():
    content = secrets.token_bytes(32)
    wrapped = wrap(content, DESKS["desk-a"].public_key(), desk_id="desk-a", library_id="national")
    # Same ciphertext, header rewritten to name desk-b (same length): desk-b's claim fails authentication.
    relabelled = WrappedKey.from_bytes(wrapped.to_bytes().replace(b"desk-a", b"desk-b"))
    with pytest.raises(UnwrapError, match="altered"):
        unwrap(relabelled, DESKS["desk-a"], desk_id="desk-b", library_id="national")
    flipped = bytearray(wrapped.to_bytes())
    flipped[-1] ^= 1
    with pytest.raises(UnwrapError):
        unwrap(WrappedKey.from_bytes(bytes(flipped)), DESKS["desk-a"], desk_id="desk-a", library_id="national")


@pytest.mark.parametrize("mangle", [
    lambda b: b[:-1], lambda b: b + b"x", lambda b: b"XXXXX" + b[5:], lambda b: b[:5], lambda b: b"",
    lambda b: b[:5] + b"\xff" + b[6:], lambda b: b.replace(b"desk-a", b"DESK/A"),
])
def test_wrapped_key_parsing_is_strict(mangle):
    wrapped = wrap(bytes(32), DESKS["desk-a"].public_key(), desk_id="desk-a", library_id="national")
    with pytest.raises(WireFormatError):
        WrappedKey.from_bytes(mangle(wrapped.to_bytes()))


def test_keys_document_round_trip_and_only_listed_desks_get_the_key():
    content = secrets.token_bytes(32)
    document = KeysDocument.build(content, publics("desk-a", "desk-b"), "national")
    parsed = KeysDocument.from_bytes(document.to_bytes())
    assert parsed.name == keys_target_name(key_id(content)) == f"keys-{key_id(content)}.json"
    assert unwrap(parsed.for_desk("desk-b"), DESKS["desk-b"], desk_id="desk-b", library_id="national") == content
    with pytest.raises(UnwrapError, match="not wrapped for desk-c"):
        parsed.for_desk("desk-c")
    assert content.hex().encode() not in document.to_bytes()


def test_keys_document_refuses_swapped_entries_extra_fields_and_empty_lists():
    content = secrets.token_bytes(32)
    obj = json.loads(KeysDocument.build(content, publics("desk-a", "desk-b"), "national").to_bytes())
    swapped = {**obj, "wrapped": {"desk-a": obj["wrapped"]["desk-b"], "desk-b": obj["wrapped"]["desk-a"]}}
    other = KeysDocument.build(secrets.token_bytes(32), publics("desk-a"), "national").to_bytes()
    for bad, phrase in [
        (swapped, "names another desk"),
        ({**obj, "wrapped": {"desk-a": json.loads(other)["wrapped"]["desk-a"]}}, "names another desk"),
        ({**obj, "extra": 1}, "unexpected"),
        ({**obj, "wrapped": {}}, "between 1 and"),
        ({**obj, "kind": "library"}, "kind"),
        ({**obj, "key_id": "ZZ"}, "32 lower-case hex"),
        ({**obj, "wrapped": {"desk-a": "not base64!"}}, "not base64"),
    ]:
        with pytest.raises(WireFormatError, match=phrase):
            KeysDocument.from_bytes(json.dumps(bad).encode())
    with pytest.raises(WireFormatError, match="no registered, unrevoked desk"):
        KeysDocument.build(content, {}, "national")


def test_a_sealed_document_opens_for_each_recipient_only_and_hides_its_text():
    text = b'{"accounts": [{"username": "officer", "password_hash": "scrypt$16384$8$1$aa$bb"}]}'
    sealed = SealedDocument.from_bytes(SealedDocument.seal(text, publics("desk-a", "desk-b")).to_bytes())
    assert b"officer" not in sealed.to_bytes() and b"scrypt" not in sealed.to_bytes()
    assert sealed.open("desk-a", DESKS["desk-a"]) == text == sealed.open("desk-b", DESKS["desk-b"])
    with pytest.raises(UnwrapError, match="not sealed for desk-c"):
        sealed.open("desk-c", DESKS["desk-c"])
    with pytest.raises(UnwrapError):
        sealed.open("desk-a", DESKS["desk-b"])
    obj = json.loads(sealed.to_bytes())
    tampered = bytearray(base64.b64decode(obj["ciphertext"]))
    tampered[0] ^= 1
    obj["ciphertext"] = base64.b64encode(bytes(tampered)).decode()
    with pytest.raises(UnwrapError, match="altered"):
        SealedDocument.from_bytes(json.dumps(obj).encode()).open("desk-a", DESKS["desk-a"])


def test_a_configuration_key_cannot_pass_for_a_library_key():
    sealed = SealedDocument.seal(b"{}", publics("desk-a"))
    wrapped = sealed.wrapped["desk-a"]
    with pytest.raises(UnwrapError, match="for library 'desk-config'"):
        unwrap(wrapped, DESKS["desk-a"], desk_id="desk-a", library_id="national")
    with pytest.raises(WireFormatError):
        validate_library_id("desk-config")
