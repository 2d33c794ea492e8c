"""The chain and checkpoint rules, pure: hashes, genesis, signatures, key formats."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.audit import chain
from core.audit.ack import Ack
from core.audit.checkpoint import Checkpoint, public_key_from_bytes, public_key_hex, public_key_pem
from core.audit.errors import KeyFormatError, SignatureError
from core.errors import WireFormatError
from core.events import AuditEvent


def event(seq: int = 1, **over) -> AuditEvent:
    fields = dict(device_id="desk-01", seq=seq, type="search", actor="pc1", outcome="candidates_shown",
                  details={"candidates": 3})
    fields.update(over)
    return AuditEvent(**fields)


def test_sealed_event_links_to_its_predecessor_and_its_hash_covers_content():
    first = chain.seal(event(1), chain.genesis_hash("desk-01"))
    second = chain.seal(event(2), first.hash)
    assert second.prev_hash == first.hash
    assert chain.expected_hash(second) == second.hash
    assert chain.expected_hash(AuditEvent(**{**second.__dict__, "actor": "someone-else"})) != second.hash


def test_genesis_binds_a_chain_to_its_device():
    assert chain.genesis_hash("desk-01") != chain.genesis_hash("desk-02")


def test_canonical_bytes_ignore_chain_fields_and_key_order():
    e = event(details={"b": 1, "a": 2})
    assert chain.canonical_bytes(e) == chain.canonical_bytes(chain.seal(e, "0" * 64))
    assert b'"a":2,"b":1' in chain.canonical_bytes(e)


def test_checkpoint_verifies_only_with_the_signing_key_and_unchanged():
    key = Ed25519PrivateKey.generate()
    cp = Checkpoint.sign(key, "desk-01", 10, "c" * 64)
    cp.verify(key.public_key())
    assert Checkpoint.from_bytes(cp.to_bytes()) == cp
    with pytest.raises(SignatureError):
        cp.verify(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError):
        Checkpoint(**{**cp.__dict__, "seq": 11}).verify(key.public_key())


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"v": 1}', b"x" * 5000])
def test_malformed_checkpoints_are_refused(payload):
    with pytest.raises(WireFormatError):
        Checkpoint.from_bytes(payload)


def test_public_keys_read_from_pem_hex_and_raw():
    key = Ed25519PrivateKey.generate().public_key()
    hex_key = public_key_hex(key)
    for form in (public_key_pem(key), hex_key.encode(), bytes.fromhex(hex_key)):
        assert public_key_hex(public_key_from_bytes(form)) == hex_key
    with pytest.raises(KeyFormatError):
        public_key_from_bytes(b"not a key")


def test_ack_round_trips_and_refuses_negative_counts():
    ack = Ack.now("desk-01", 5, 4, "ab" * 32)
    assert Ack.from_bytes(ack.to_bytes()) == ack
    with pytest.raises(WireFormatError):
        Ack.now("desk-01", -1, 0, "ab" * 32)
    with pytest.raises(WireFormatError):
        Ack.now("desk-01", 1, 0, "not a hash")
