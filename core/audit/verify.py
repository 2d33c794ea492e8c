"""Verify a sequence of chained events and signed checkpoints, reporting every fault with its position.

The input is what an export (or a device's own log) holds, in file order:
full events, *links* (the digest of an event the export leaves out) and
checkpoints. Each device's run must start at its genesis (seq 1) or at a
checkpoint that anchors it; every event must hash to the value it carries and
link to the one before; every checkpoint must be signed by the device's key
and match the chain at its sequence number; and the last event should be
covered by a checkpoint, or nothing stops whoever holds the file from
rewriting the end of the chain.

Pure and total: it never raises on bad data, it reports it. Findings name the
position (the caller's line or row number), the device, the sequence number
and a reason written for an auditor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.audit.chain import event_digest, genesis_hash, link_hash
from core.audit.checkpoint import Checkpoint
from core.audit.errors import SignatureError
from core.events import AuditEvent

# Finding kinds, stable strings so tools can filter on them.
GAP = "gap"
REORDER = "reorder"
DUPLICATE = "duplicate"
BAD_LINK = "bad_link"
EDITED = "edited"
UNSEALED = "unsealed"
NO_ANCHOR = "no_anchor"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
CHECKPOINT_UNMATCHED = "checkpoint_unmatched"
UNSIGNED_TAIL = "unsigned_tail"


@dataclass(frozen=True)
class EventRecord:
    position: int
    event: AuditEvent

    @property
    def device_id(self) -> str:
        return self.event.device_id

    @property
    def seq(self) -> int:
        return self.event.seq


@dataclass(frozen=True)
class LinkRecord:
    """An event left out of an export, present only as its digest so the chain still links."""

    position: int
    device_id: str
    seq: int
    digest: str


@dataclass(frozen=True)
class CheckpointRecord:
    position: int
    checkpoint: Checkpoint

    @property
    def device_id(self) -> str:
        return self.checkpoint.device_id


Record = EventRecord | LinkRecord | CheckpointRecord


@dataclass(frozen=True, order=True)
class Finding:
    position: int
    device_id: str
    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"position {self.position}: device {self.device_id}"
        if self.seq is not None:
            where += f" seq {self.seq}"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class _DeviceState:
    last_seq: int | None = None
    head: str | None = None  # hash at last_seq; None when unknown (after a gap)
    signed_through: int = 0
    hashes: dict[int, str] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    pending: list[CheckpointRecord] = field(default_factory=list)
    events: int = 0


@dataclass
class VerifyReport:
    findings: list[Finding]
    events: int
    links: int
    checkpoints: int
    devices: int

    @property
    def ok(self) -> bool:
        return not self.findings


def _check_signature(rec: CheckpointRecord, keys: Mapping[str, Ed25519PublicKey]) -> Finding | None:
    cp = rec.checkpoint
    key = keys.get(cp.device_id)
    if key is None:
        return Finding(rec.position, cp.device_id, cp.seq, UNKNOWN_KEY,
                       "no public key is known for this device, so its checkpoint cannot be trusted")
    try:
        cp.verify(key)
    except SignatureError:
        return Finding(rec.position, cp.device_id, cp.seq, BAD_SIGNATURE,
                       "checkpoint signature does not verify with the device's public key")
    return None


def _match_checkpoint(rec: CheckpointRecord, state: _DeviceState, signed: bool, out: list[Finding]) -> None:
    cp = rec.checkpoint
    actual = state.hashes.get(cp.seq)
    if actual is None:
        return  # unknown after a gap: the gap is reported already
    if actual != cp.head:
        out.append(Finding(rec.position, cp.device_id, cp.seq, CHECKPOINT_MISMATCH,
                           "the signed head does not match the chain at this sequence number: an event at "
                           "or before it was altered, removed or inserted"))
    elif signed and cp.seq > state.signed_through:
        state.signed_through = cp.seq


def verify_records(records: Iterable[Record], keys: Mapping[str, Ed25519PublicKey],
                   *, require_signed_tail: bool = True) -> VerifyReport:
    """Check every record; findings come back sorted by position."""
    states: dict[str, _DeviceState] = {}
    out: list[Finding] = []
    counts = {"events": 0, "links": 0, "checkpoints": 0}

    for rec in records:
        state = states.setdefault(rec.device_id, _DeviceState())
        if isinstance(rec, CheckpointRecord):
            counts["checkpoints"] += 1
            bad = _check_signature(rec, keys)
            if bad:
                out.append(bad)
            cp = rec.checkpoint
            if state.last_seq is None:
                # An anchor: the export starts after this point, and the signed head stands for all before it.
                state.last_seq, state.head = cp.seq, cp.head
                state.hashes[cp.seq] = cp.head
                if bad is None:
                    state.signed_through = cp.seq
            elif cp.seq <= state.last_seq:
                _match_checkpoint(rec, state, bad is None, out)
            elif bad is None:
                state.pending.append(rec)
            continue

        seq = rec.seq
        device = rec.device_id
        if isinstance(rec, EventRecord):
            counts["events"] += 1
        else:
            counts["links"] += 1
        if state.last_seq is None:
            expected: str | None = genesis_hash(device) if seq == 1 else None
            if seq != 1:
                out.append(Finding(rec.position, device, seq, NO_ANCHOR,
                                   f"the first entry for this device is seq {seq}, but nothing anchors seq "
                                   f"{seq - 1} (no checkpoint before it), so the chain cannot be checked "
                                   "from its start"))
        elif seq == state.last_seq or seq in state.hashes:
            kind = DUPLICATE if seq == state.last_seq else REORDER
            why = ("this sequence number appears twice" if kind == DUPLICATE
                   else f"seq {seq} comes after seq {state.last_seq}: entries are out of order")
            out.append(Finding(rec.position, device, seq, kind, why))
            continue
        elif seq < state.last_seq:
            out.append(Finding(rec.position, device, seq, REORDER,
                               f"seq {seq} comes after seq {state.last_seq}: entries are out of order"))
            continue
        elif seq > state.last_seq + 1:
            missing = (f"seq {state.last_seq + 1}" if seq == state.last_seq + 2
                       else f"seqs {state.last_seq + 1}..{seq - 1}")
            out.append(Finding(rec.position, device, seq, GAP,
                               f"{missing} missing before this entry: events were removed or never arrived"))
            expected = None
        else:
            expected = state.head

        if isinstance(rec, EventRecord):
            event = rec.event
            if not event.sealed:
                out.append(Finding(rec.position, device, seq, UNSEALED, "event carries no chain hashes"))
                head = None
            else:
                assert event.prev_hash is not None and event.hash is not None
                if link_hash(event.prev_hash, event_digest(event)) != event.hash:
                    out.append(Finding(rec.position, device, seq, EDITED,
                                       "the event's content does not match its hash: it was altered"))
                if expected is not None and event.prev_hash != expected:
                    out.append(Finding(rec.position, device, seq, BAD_LINK,
                                       f"prev_hash does not match the hash of seq {seq - 1}: an event was "
                                       "altered, removed or inserted just before this one"))
                head = event.hash
        else:
            head = link_hash(expected, rec.digest) if expected is not None else None

        state.last_seq, state.head = seq, head
        state.events += 1
        state.positions[seq] = rec.position
        if head is not None:
            state.hashes[seq] = head
        still: list[CheckpointRecord] = []
        for cp_rec in state.pending:
            if cp_rec.checkpoint.seq <= seq:
                _match_checkpoint(cp_rec, state, True, out)
            else:
                still.append(cp_rec)
        state.pending = still

    for device, state in states.items():
        for cp_rec in state.pending:
            out.append(Finding(cp_rec.position, device, cp_rec.checkpoint.seq, CHECKPOINT_UNMATCHED,
                               f"checkpoint covers seq {cp_rec.checkpoint.seq} but the entries stop at seq "
                               f"{state.last_seq}: events at the end were removed"))
        unsigned = [s for s in state.positions if s > state.signed_through]
        if require_signed_tail and unsigned and state.last_seq is not None:
            first = min(unsigned)
            out.append(Finding(state.positions[first], device, first, UNSIGNED_TAIL,
                               f"seqs {first}..{state.last_seq} are not covered by a signed checkpoint, "
                               "so they could have been rewritten"))
    return VerifyReport(findings=sorted(out), devices=len(states), **counts)
