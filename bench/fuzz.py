"""Coverage-guided fuzzing (atheris/libFuzzer) of every parser that reads bytes from outside (issue #16).

    .venv/bin/python -m bench.fuzz list                     # the targets and what each checks
    .venv/bin/python -m bench.fuzz seed                     # write seed inputs from the project's own encoders
    .venv/bin/python -m bench.fuzz summary                  # the last run of each target, as a Markdown table
    nice -n 19 .venv/bin/python -m bench.fuzz event --runs 1000000
    nice -n 19 .venv/bin/python -m bench.fuzz all --runs 1000000   # every target in turn, one process each

Each target calls one entry point and catches only that module's documented error family
(``WireFormatError``, ``SnapshotError``, ``ImageRejectedError``); anything else (``TypeError``,
``RecursionError``, a failed round-trip assertion, a segfault in hnswlib) is a crash, which
libFuzzer saves under ``var/fuzz/<target>/crash-*``. Copy a crash input to
``tests/fuzz/crashes/<target>/`` once the bug is fixed: ``tests/fuzz/test_regressions.py``
replays it, and every corpus file, through the same ``check()`` under pytest.

The saved corpus ``tests/fuzz/corpus/<target>/`` is the seed inputs plus what libFuzzer kept,
minimised with ``-merge=1`` after each run. Nothing in it comes from a face photo: images are
synthetic gradients, templates are random unit vectors. Not run in CI (needs atheris from the
``bench`` extra and minutes of CPU); docs/fuzzing.md has the figures of the last campaign.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
CRASHES = ROOT / "tests" / "fuzz" / "crashes"
WORK = ROOT / "var" / "fuzz"
# The packages whose Python code atheris instruments for coverage.
INSTRUMENTED = ["core", "library", "models", "appliance.updates.trust"]


# --- Entry points. Each takes the fuzzer's bytes and may raise only its target's documented errors. ---------------

def _round_trip(cls: Any, data: bytes) -> None:
    """Parse; whatever parses must encode and parse back to an equal object."""
    obj = cls.from_bytes(data)
    again = cls.from_bytes(obj.to_bytes())
    assert again == obj, (obj, again)


def _wire(data: bytes) -> None:
    from core.wire import decode_object, encode_object

    obj = decode_object(data, 64 * 1024, "Fuzzed payload")
    encoded = encode_object(obj, 1024 * 1024, "Fuzzed payload")
    assert decode_object(encoded, 1024 * 1024, "Fuzzed payload") == obj


def _event(data: bytes) -> None:
    from core.events import AuditEvent

    _round_trip(AuditEvent, data)


def _ack(data: bytes) -> None:
    from core.audit.ack import Ack

    _round_trip(Ack, data)


def _checkpoint(data: bytes) -> None:
    from core.audit.checkpoint import Checkpoint

    _round_trip(Checkpoint, data)


def _announcement(data: bytes) -> None:
    from core.library_announce import LibraryAnnouncement

    _round_trip(LibraryAnnouncement, data)


def _heartbeat(data: bytes) -> None:
    from core.fleet import Heartbeat

    _round_trip(Heartbeat, data)


def _command(data: bytes) -> None:
    from core.fleet import FleetCommand

    _round_trip(FleetCommand, data)


def _review_request(data: bytes) -> None:
    from core.peer_review import PeerReviewRequest

    _round_trip(PeerReviewRequest, data)


def _review_outcome(data: bytes) -> None:
    from core.peer_review import PeerReviewOutcome

    _round_trip(PeerReviewOutcome, data)


def parse_target_custom(custom: object) -> object:
    """What the desk does with a verified target's ``custom`` metadata (appliance.updates.updater and .config)."""
    from core.desk_config import ConfigTargetInfo, is_config
    from core.library_announce import LibraryTargetInfo

    cls = ConfigTargetInfo if is_config(custom) else LibraryTargetInfo
    info = cls.from_dict(custom)
    assert isinstance(info.name, str)
    assert cls.from_dict(info.to_dict()) == info
    return info


def _target_custom(data: bytes) -> None:
    # TUF metadata is JSON that python-tuf has already parsed; bytes that are not JSON never reach the desk.
    try:
        custom = json.loads(data)
    except (ValueError, RecursionError):
        return
    parse_target_custom(custom)


def _desk_config(data: bytes) -> None:
    from core.desk_config import DeskConfig

    config = DeskConfig.parse(data)
    assert DeskConfig.parse(config.to_bytes()) == config


def _image_header(data: bytes) -> None:
    from models.image import read_header

    header = read_header(data)
    # An incomplete file may end before its size is declared; decode_image refuses it as incomplete.
    assert header.format in ("JPEG", "PNG") and (not header.complete or header.width > 0 < header.height)


def _image_decode(data: bytes) -> None:
    from models.image import decode_image

    image = decode_image(data)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"


class _Reader:
    """Deterministic structure from bytes (like FuzzedDataProvider, but replayable without atheris)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def u8(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def chunk(self) -> bytes:
        return self.take(int.from_bytes(self.take(2), "little"))

    def rest(self) -> bytes:
        return self.take(len(self.data))


# The tiny index whose state the index target mutates: 20 nodes of 4 dimensions, M=4, so a state is ~1.7 KB.
INDEX_DIM = 4
INDEX_ARRAYS = ("data_level0", "element_levels", "label_lookup_external", "label_lookup_internal", "link_lists")
_INDEX_DTYPES = {"data_level0": "int8", "element_levels": "int32", "label_lookup_external": "uint64",
                 "label_lookup_internal": "uint32", "link_lists": "int8"}


def encode_index_state(scalars_json: str, arrays: dict[str, Any]) -> bytes:
    """The index target's input: scalars JSON, a NUL, then each array as a 2-byte length and its bytes."""
    out = scalars_json.encode() + b"\0"
    for name in INDEX_ARRAYS:
        raw = arrays[name].tobytes()
        out += len(raw).to_bytes(2, "little") + raw
    return out


def _index_state(data: bytes) -> None:
    import numpy as np

    from library import index

    scalars, _, rest = data.partition(b"\0")
    reader = _Reader(rest)
    arrays = {}
    for name in INDEX_ARRAYS:
        raw = reader.chunk()
        dtype = np.dtype(_INDEX_DTYPES[name])
        arrays[name] = np.frombuffer(raw[:len(raw) - len(raw) % dtype.itemsize], dtype=dtype).copy()
    hnsw = index.join_state(scalars.decode("utf-8", "replace"), arrays, INDEX_DIM)
    # A state that passes the check must be safe to search: this is where a bad one used to segfault. A graph
    # that yields fewer than k results (nodes unreachable or deleted) is hnswlib's own refusal, not a crash.
    probe = np.ones(INDEX_DIM, dtype=np.float32) / 2
    for k in (1, 5, hnsw.get_current_count()):
        try:
            index.search(hnsw, probe, k)
        except RuntimeError as e:
            if not str(e).startswith("Cannot return the results"):
                raise


# A delta's meta table and added rows, as SQLite hands them over: TEXT columns give str, bytes or None,
# BLOB columns any of int, float, str, bytes.
DELTA_META_KEYS = ("format", "format_version", "base_version", "base_digest", "result_version", "result_digest",
                   "embedder_id", "dim", "added", "removed", "created_at")
_TEXT_COLUMNS = 8  # subject_ref .. quality, after record_id


def _sqlite_value(reader: _Reader, text_affinity: bool) -> object:
    kind = reader.u8() % (3 if text_affinity else 5)
    if kind == 0:
        return None
    if kind == 1:
        return reader.chunk().decode("utf-8", "replace")
    if kind == 2:
        return reader.chunk()
    if kind == 3:
        return int.from_bytes(reader.take(8), "little", signed=True)
    return struct.unpack("<d", reader.take(8).ljust(8, b"\0"))[0]


def encode_delta(meta: dict[str, str], rows: list[tuple[object, ...]]) -> bytes:
    """The delta target's input for a delta's meta and rows (the form ``_delta`` reads back)."""

    def value(v: object, text_affinity: bool) -> bytes:
        if v is None:
            return b"\0"
        if isinstance(v, str):
            raw = v.encode()
            return b"\1" + len(raw).to_bytes(2, "little") + raw
        if isinstance(v, bytes):
            return b"\2" + len(v).to_bytes(2, "little") + v
        if isinstance(v, int):
            return b"\3" + v.to_bytes(8, "little", signed=True)
        return b"\4" + struct.pack("<d", v)

    out = bytes([len(meta)])
    for k, v in meta.items():
        index = DELTA_META_KEYS.index(k) if k in DELTA_META_KEYS else 255
        out += bytes([index]) + (b"" if index != 255 else len(k.encode()).to_bytes(2, "little") + k.encode())
        out += value(v, True)
    out += bytes([len(rows)])
    for row in rows:
        out += int(row[0]).to_bytes(8, "little", signed=True)  # type: ignore[call-overload]
        out += b"".join(value(v, True) for v in row[1:9]) + b"".join(value(v, False) for v in row[9:])
    return out


def _delta(data: bytes) -> None:
    from pathlib import PurePath

    from library import delta

    reader = _Reader(data)
    meta: dict[str, object] = {}
    for _ in range(reader.u8() % 16):
        index = reader.u8()
        key = DELTA_META_KEYS[index] if index < len(DELTA_META_KEYS) else reader.chunk().decode("utf-8", "replace")
        value = _sqlite_value(reader, True)
        meta[key] = "" if value is None else value  # meta.value is NOT NULL
    info = delta._info(meta, PurePath("fuzzed.delta"))  # type: ignore[arg-type]
    for _ in range(reader.u8() % 8):
        record_id = int.from_bytes(reader.take(8), "little", signed=True)
        texts = [_sqlite_value(reader, True) for _ in range(_TEXT_COLUMNS)]
        blobs = [_sqlite_value(reader, False) for _ in range(3)]
        record, vector, _ = delta.added_record((record_id, *texts, *blobs), info.dim)
        assert vector.shape == (info.dim,) and record.record_id == record_id


@dataclass(frozen=True)
class Target:
    name: str
    entry: Callable[[bytes], None]
    errors: tuple[type[BaseException], ...]
    max_len: int
    checks: str
    json: bool = True  # inputs are JSON: libFuzzer gets tests/fuzz/json.dict


def _targets() -> dict[str, Target]:
    from core.errors import WireFormatError
    from library.errors import SnapshotError
    from models.errors import ImageRejectedError

    wire = (WireFormatError,)
    targets = [
        Target("wire", _wire, wire, 4096, "core.wire.decode_object: strict JSON object under the depth, key and "
               "string caps; whatever decodes re-encodes and decodes to the same object"),
        Target("event", _event, wire, 4096, "AuditEvent.from_bytes, then a round trip through to_bytes"),
        Target("ack", _ack, wire, 512, "Ack.from_bytes, then a round trip"),
        Target("checkpoint", _checkpoint, wire, 2048, "Checkpoint.from_bytes, then a round trip"),
        Target("announcement", _announcement, wire, 2048, "LibraryAnnouncement.from_bytes, then a round trip"),
        Target("heartbeat", _heartbeat, wire, 2048, "Heartbeat.from_bytes, then a round trip"),
        Target("command", _command, wire, 1024, "FleetCommand.from_bytes, then a round trip"),
        Target("review_request", _review_request, wire, 4096, "PeerReviewRequest.from_bytes, then a round trip"),
        Target("review_outcome", _review_outcome, wire, 4096, "PeerReviewOutcome.from_bytes, then a round trip"),
        Target("target_custom", _target_custom, wire, 1024, "a TUF target's custom metadata as the desk reads it "
               "(ConfigTargetInfo or LibraryTargetInfo.from_dict, the target name), then a round trip"),
        Target("desk_config", _desk_config, wire, 4096, "DeskConfig.parse, then a round trip through to_bytes"),
        Target("image_header", _image_header, (ImageRejectedError,), 4096,
               "models.image.read_header: the JPEG segment and PNG chunk walk", json=False),
        Target("image_decode", _image_decode, (ImageRejectedError,), 4096,
               "models.image.decode_image: the header checks, then OpenCV's decoder (not instrumented)", json=False),
        Target("index_state", _index_state, (SnapshotError,), 4096,
               "library.index.join_state (check_state, then hnswlib's loader) on a 20-node index's state; a state "
               "that passes is searched with k = 1, 5 and all", json=False),
        Target("delta", _delta, (SnapshotError,), 2048,
               "library.delta: a delta's meta (_info) and each added row (added_record), as SQLite returns them",
               json=False),
    ]
    return {t.name: t for t in targets}


def check(name: str, data: bytes) -> None:
    """Run one input through a target; documented errors are an answer, anything else propagates."""
    target = _targets()[name]
    with contextlib.suppress(target.errors):
        target.entry(data)


# --- Seeds: valid encodings from the project's own encoders. ---------------------------------------------------

def _fixed_key(label: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def _seeds_wire() -> list[bytes]:
    seeds = [b"{}", b'{"v":1}', b'{"a":[1,2.5,-3e10,true,false,null,"x\\u00e9"],"b":{"c":{"d":[]}}}']
    for name in ("event", "ack", "checkpoint", "announcement", "heartbeat", "command", "review_request",
                 "review_outcome"):
        seeds += SEEDS[name]()
    return seeds


def _seeds_event() -> list[bytes]:
    from core.events import AuditEvent

    base = {"device_id": "desk-01", "actor": "officer1", "outcome": "ok",
            "event_id": "12345678-1234-4234-8234-123456789abc", "occurred_at": "2026-01-02T03:04:05.678+00:00"}
    return [
        AuditEvent(seq=1, type="login", **base).to_bytes(),
        AuditEvent(seq=7, type="search", details={"candidates": 20, "library_version": 3, "reason": "custody"},
                   prev_hash="a" * 64, hash="b" * 64, **base).to_bytes(),
        AuditEvent(seq=2**40, type="deletion", details={"case": "C-1", "nested": {"k": [1, None, 2.5]}},
                   **base).to_bytes(),
    ]


def _seeds_ack() -> list[bytes]:
    from core.audit.ack import Ack

    return [Ack("desk-01", 0, 0, "0" * 64, "2026-01-02T03:04:05.678+00:00").to_bytes(),
            Ack("custody-suite-7", 123456, 120, "ab" * 32, "2026-01-02T03:04:05.678901+00:00").to_bytes()]


def _seeds_checkpoint() -> list[bytes]:
    from core.audit.checkpoint import Checkpoint

    key = _fixed_key("checkpoint")
    return [Checkpoint.sign(key, "desk-01", 100, "c" * 64, "2026-01-02T03:04:05.678+00:00").to_bytes(),
            Checkpoint.sign(key, "desk-02", 1, "0" * 64, "2026-01-02T03:04:05").to_bytes()]


def _seeds_announcement() -> list[bytes]:
    from core.library_announce import LibraryAnnouncement

    when = "2026-01-02T03:04:05+00:00"
    return [LibraryAnnouncement(3, "library-v000003.db", "full", "sha256:" + "d" * 64, when).to_bytes(),
            LibraryAnnouncement(4, "library-v000003-to-v000004.delta", "delta", "e" * 32, when).to_bytes(),
            LibraryAnnouncement(2, "config-v000002.json", "config", "sha256:" + "f" * 64, when).to_bytes()]


def _seeds_heartbeat() -> list[bytes]:
    from core.fleet import Heartbeat

    return [
        Heartbeat("desk-01", "2026-01-02T03:04:05.678+00:00", 60.0, "1.2.3", 3, "emb@1", 10**10, 10**11, 10**9,
                  8 * 10**9, 0, 12.5, -0.25, "tpm").to_bytes(),
        Heartbeat("desk-02", "2026-01-02T03:04:05+01:00", 0.5, "dev", None, None, 0, 0, None, None, 17, None, None,
                  "file").to_bytes(),
    ]


def _seeds_command() -> list[bytes]:
    from datetime import UTC, datetime

    from core.fleet import FleetCommand

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return [FleetCommand.sign(_fixed_key("fleet"), "desk-01", "wipe", now=now, nonce="0" * 32).to_bytes()]


def _seeds_review_request() -> list[bytes]:
    from core.peer_review import CandidateSummary, PeerReviewRequest

    candidates = (CandidateSummary(1, "SUBJ-00001", 0.91, "strong", "needs_peer_review"),
                  CandidateSummary(2, "SUBJ-00002", 0.5, "weak", "not_viable"))
    base = {"device_id": "desk-01", "case_id": "C-2026-0001", "custody_ref": "CR/1", "requested_by": "officer1",
            "request_id": "12345678-1234-4234-8234-123456789abc", "requested_at": "2026-01-02T03:04:05.678+00:00"}
    return [PeerReviewRequest(doubts="Ears differ.", ranks=(1,), candidates=candidates, library_version="3",
                              **base).to_bytes(),
            PeerReviewRequest(doubts="Unsure about all.", ranks=(), candidates=(), **base).to_bytes()]


def _seeds_review_outcome() -> list[bytes]:
    from core.peer_review import PeerReviewOutcome

    base = {"device_id": "desk-01", "request_id": "12345678-1234-4234-8234-123456789abc", "reviewer": "fr-team-1",
            "decided_at": "2026-01-02T03:04:05.678+00:00"}
    return [PeerReviewOutcome(decisions={1: "viable", 2: "not_viable"}, notes="Same scar.", **base).to_bytes(),
            PeerReviewOutcome(decisions={}, notes="None in question.", **base).to_bytes()]


def _seeds_target_custom() -> list[bytes]:
    from core.desk_config import ConfigTargetInfo
    from core.library_announce import LibraryTargetInfo

    infos = [LibraryTargetInfo("full", 3, "emb@1", "sha256:" + "d" * 64, "0f" * 16),
             LibraryTargetInfo("delta", 4, "emb@1", "sha256:" + "e" * 64, "0f" * 16, 3, "sha256:" + "d" * 64),
             ConfigTargetInfo(2, "sha256:" + "f" * 64)]
    return [json.dumps(i.to_dict(), sort_keys=True).encode() for i in infos]


def _seeds_desk_config() -> list[bytes]:
    from datetime import UTC, datetime

    from core import passwords
    from core.desk_config import ConfigAccount, DeskConfig, Retention, Thresholds

    # The stored format with a fixed salt and digest, so the seed is the same on every run.
    hashed = f"scrypt${2**14}${passwords.SCRYPT_R}${passwords.SCRYPT_P}${'5a' * 16}${'c3' * 32}"
    accounts = [ConfigAccount(username="admin", role="device_admin", password_hash=hashed),
                ConfigAccount(username="officer.1", role="custody_officer", password_hash=hashed, disabled=True)]
    config = DeskConfig(version=2, issued_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), accounts=accounts,
                        thresholds=Thresholds(top_k=20), retention=Retention(viable_match_days=365))
    return [config.to_bytes(), config.model_copy(update={"accounts": accounts[:1]}).to_bytes()]


def _images() -> list[bytes]:
    import cv2
    import numpy as np

    y, x = np.mgrid[0:16, 0:24]
    colour = np.dstack([x * 10, y * 15, (x + y) * 5]).astype(np.uint8)
    grey = (x * 10).astype(np.uint8)
    out = []
    for image, ext, params in [
        (colour, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 50]),
        (colour, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (colour, ".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]),
        (grey, ".jpg", []),
        (colour, ".png", []),
        (grey, ".png", []),
        ((colour.astype(np.uint16) * 256), ".png", []),
        (np.dstack([colour, grey]), ".png", []),
    ]:
        ok, buf = cv2.imencode(ext, image, params)
        assert ok
        out.append(buf.tobytes())
    return out


def _seeds_image_header() -> list[bytes]:
    images = _images()
    return [*images, images[0][:-2], images[4][:-12], b"GIF89a", b"BM\0\0"]


def tiny_index_state(seed: int = 1, deleted: int = 0) -> tuple[str, dict[str, Any]]:
    """The state of a 20-node, 4-dimension index (M=4), built with hnswlib from random unit vectors."""
    import hnswlib
    import numpy as np

    from library import index

    vectors = np.random.default_rng(seed).normal(size=(20, INDEX_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hnsw = hnswlib.Index(space=index.SPACE, dim=INDEX_DIM)
    hnsw.init_index(max_elements=20, M=4, ef_construction=20, random_seed=seed)
    hnsw.add_items(vectors, np.arange(1, 21, dtype=np.uint64))
    for label in range(1, deleted + 1):
        hnsw.mark_deleted(label)
    return index.split_state(hnsw)


def _seeds_index_state() -> list[bytes]:
    return [encode_index_state(*tiny_index_state(seed, deleted)) for seed, deleted in ((1, 0), (2, 0), (3, 3))]


def _seeds_delta() -> list[bytes]:
    meta, rows = delta_parts()
    return [encode_delta(meta, rows), encode_delta(meta, rows[:1]), encode_delta(meta, [])]


def delta_parts() -> tuple[dict[str, str], list[tuple[object, ...]]]:
    """The meta and added rows of a real delta between two 4-record libraries of random 4-D templates."""
    from datetime import date

    import numpy as np

    from library import cipher
    from library.delta import make_delta
    from library.records import ReferenceRecord
    from library.snapshot import Snapshot, SnapshotWriter, new_key

    vectors = np.random.default_rng(0).normal(size=(6, INDEX_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def record(i: int) -> ReferenceRecord:
        return ReferenceRecord(f"SUBJ-{i}", f"SUBJ-{i}/{i}.jpg", sex="MF"[i % 2], ethnicity_code="IC1",
                               date_of_birth=date(1980, 1, 1 + i), image_date=date(2020, 2, 2), age_band="25-34",
                               quality='{"verdict": "good"}' if i % 2 else None)

    with tempfile.TemporaryDirectory() as tmp:
        key, folder = new_key(), Path(tmp)
        for version, items in ((1, range(0, 4)), (2, range(2, 6))):
            with SnapshotWriter.create(folder / f"v{version}.db", key, embedder_id="emb@1", dim=INDEX_DIM,
                                       version=version) as writer:
                for i in items:
                    writer.add(record(i), vectors[i], b"\xff\xd8thumb-%d\xff\xd9" % i)
        base, target = Snapshot.open(folder / "v1.db", key), Snapshot.open(folder / "v2.db", key)
        make_delta(base, target, folder / "d", key)
        base.close()
        target.close()
        conn = cipher.connect(folder / "d", key)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        rows = conn.execute("SELECT r.record_id, r.subject_ref, r.sex, r.ethnicity_code, r.date_of_birth, "
                            "r.age_band, r.image_date, r.source, r.quality, t.vector, h.jpeg, r.digest FROM records r "
                            "JOIN templates t USING (record_id) JOIN thumbnails h USING (record_id) "
                            "ORDER BY r.record_id").fetchall()
        conn.close()
    return meta, rows


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "wire": _seeds_wire, "event": _seeds_event, "ack": _seeds_ack, "checkpoint": _seeds_checkpoint,
    "announcement": _seeds_announcement, "heartbeat": _seeds_heartbeat, "command": _seeds_command,
    "review_request": _seeds_review_request, "review_outcome": _seeds_review_outcome,
    "target_custom": _seeds_target_custom, "desk_config": _seeds_desk_config, "image_header": _seeds_image_header,
    "image_decode": _images, "index_state": _seeds_index_state, "delta": _seeds_delta,
}


def write_seeds(names: list[str]) -> None:
    """Add the seed inputs to the saved corpus (files named by content, as libFuzzer names them)."""
    for name in names:
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for data in SEEDS[name]():
            check(name, data)  # a seed that does not parse cleanly is a bug in the seed or the parser
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


# --- Running libFuzzer. ------------------------------------------------------------------------------------------

_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")


def _fuzz_in_process(name: str, args: list[str]) -> None:
    """Instrument the project's packages, then hand over to libFuzzer (which exits the process)."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        targets = _targets()
        for module in ("core.wire", "core.events", "core.audit.ack", "core.audit.checkpoint", "core.fleet",
                       "core.library_announce", "core.peer_review", "core.desk_config", "models.image",
                       "library.index", "library.delta"):
            __import__(module)
    target = targets[name]

    def one(data: bytes) -> None:
        with contextlib.suppress(target.errors):
            target.entry(data)

    # libFuzzer re-runs argv[0] for -merge=1, so it is the wrapper script run() writes, not this module.
    atheris.Setup([os.environ.get("FUZZ_ARGV0", sys.argv[0]), *args], one)
    atheris.Fuzz()


def run(name: str, runs: int, extra: list[str]) -> dict[str, Any]:
    """Fuzz one target in a child process, then minimise its corpus back into tests/fuzz/corpus/<name>."""
    target = _targets()[name]
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "corpus").mkdir(parents=True)
    saved = CORPUS / name
    saved.mkdir(parents=True, exist_ok=True)
    for f in saved.iterdir():
        shutil.copy(f, work / "corpus" / f.name)
    wrapper = work / "fuzzer"
    wrapper.write_text(f'#!/bin/sh\ncd {ROOT}\nexec {sys.executable} -m bench.fuzz _child {name} -- "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "FUZZ_ARGV0": str(wrapper), "PYTHONPATH": str(ROOT)}
    log = work / "fuzz.log"
    args = [str(work / "corpus"), f"-runs={runs}", f"-max_len={target.max_len}", "-print_final_stats=1",
            f"-artifact_prefix={work}/", "-rss_limit_mb=4096", "-timeout=10", *extra]
    if target.json:
        args.append(f"-dict={ROOT / 'tests' / 'fuzz' / 'json.dict'}")
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run([str(wrapper), *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            check=False).returncode
    wall = time.monotonic() - start
    text = log.read_text(errors="replace")
    stats = _STATS.findall(text)
    execs, cov, ft = (int(stats[-1][0]), int(stats[-1][1]), int(stats[-1][2])) if stats else (0, 0, 0)
    done = re.search(r"stat::number_of_executed_units: (\d+)", text)
    if done:
        execs = int(done.group(1))
    crashes = sorted(p.name for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    # Minimise: an empty folder merged with everything kept, so only inputs that add coverage stay.
    merged = work / "merged"
    merged.mkdir()
    with (work / "merge.log").open("w") as out:
        subprocess.run([str(wrapper), "-merge=1", f"-max_len={target.max_len}", str(merged), str(work / "corpus")],
                       cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if any(merged.iterdir()):
        shutil.rmtree(saved)
        shutil.copytree(merged, saved)
    result = {"target": name, "executions": execs, "cov": cov, "ft": ft, "corpus": len(list(saved.iterdir())),
              "corpus_bytes": sum(f.stat().st_size for f in saved.iterdir()), "crashes": crashes,
              "wall_s": round(wall), "exit": rc}
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary(names: list[str]) -> str:
    """The last run of each target (var/fuzz/<target>/result.json) as the Markdown table in docs/fuzzing.md."""
    lines = ["| target | executions | cov | ft | corpus files (bytes) | crashes | wall time |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name in names:
        path = WORK / name / "result.json"
        if not path.exists():
            lines.append(f"| {name} | not run | | | | | |")
            continue
        r = json.loads(path.read_text())
        crashes = ", ".join(r["crashes"]) or "none"
        lines.append(f"| {name} | {r['executions']:,} | {r['cov']} | {r['ft']} | {r['corpus']} ({r['corpus_bytes']:,}) "
                     f"| {crashes} | {r['wall_s'] // 60} min {r['wall_s'] % 60:02d} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        name, args = argv[1], argv[3:]
        _fuzz_in_process(name, args)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a target name, 'all', 'list', 'seed' or 'summary'")
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions per target (default 1,000,000)")
    parser.add_argument("extra", nargs="*", help="further libFuzzer flags, after --")
    opts = parser.parse_args(argv)
    names = list(_targets())
    if opts.target == "list":
        for target in _targets().values():
            print(f"{target.name:15} {target.checks}")
        return 0
    if opts.target == "seed":
        write_seeds(names)
        return 0
    if opts.target == "summary":
        print(summary(names))
        return 0
    if opts.target != "all" and opts.target not in names:
        parser.error(f"unknown target {opts.target!r}; one of {', '.join(names)}")
    failed = False
    for name in names if opts.target == "all" else [opts.target]:
        result = run(name, opts.runs, opts.extra)
        print(json.dumps(result), flush=True)
        failed |= bool(result["crashes"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
