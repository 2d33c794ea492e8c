"""Reference libraries in central's one database: authorisation records, desk grants, compositions, the
manifests signed for each desk, and a hash-linked log of every action taken on them.

Tables (the names are the shared contract of issue #18; columns may be added, never renamed):

- ``reference_libraries``: one row per library, its authorisation record and status
  (requested | authorised | suspended | retired | refused). ``requested_by`` and ``authorised_account``
  are central account names (the two-person rule compares them); ``authorised_by`` and
  ``authorised_rank`` are the authoriser's name and rank as the manifest and reports show them.
  Dates (``review_due``) are ``YYYY-MM-DD``; moments are UTC ISO text with milliseconds
  (``central.database.iso``), so text order is time order.
- ``library_desk_grants``: which desks may search a library (``device_id`` ``'*'`` = every desk).
- ``library_compositions``: what each built version holds (``library.composition``), as JSON.
- ``authorisation_manifests``: every manifest signed for a desk, so its version only ever goes up.
- ``library_log``: each action (request, authorise, refuse, review, suspend, reinstate, retire, grant, withdraw,
  publish), with the account that took it. Each row carries ``sha256(prev_hash || sha256(row))`` by the
  desks' own chain rule (``core.audit.chain``), so a row edited, removed or inserted afterwards is found by
  :meth:`LibraryStore.verify_log`. Changes to a library and their log row are written in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.database import Dialect, SqlStore, StoreError, iso
from core.audit.chain import canonical_json, genesis_hash, link_hash

STATUSES = ("requested", "authorised", "suspended", "retired", "refused")
EVERY_DESK = "*"
#: Central's own library log is one chain; its genesis names it, as a desk's names the desk.
LOG_CHAIN = "central-libraries"
_LOCK_ID = 772013
_LOG_LOCK_ID = 772014  # taken per transaction in PostgreSQL, so two appends cannot share a prev_hash


def _schema(dialect: Dialect) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS reference_libraries (
            library_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            purposes TEXT NOT NULL,
            purpose_text TEXT NOT NULL,
            legal_basis TEXT NOT NULL,
            authority_reference TEXT NOT NULL,
            default_for_custody INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            authorised_by TEXT,
            authorised_rank TEXT,
            authorised_account TEXT,
            authorised_at TEXT,
            review_due TEXT,
            expires_at TEXT,
            suspended_at TEXT,
            suspended_by TEXT,
            retired_at TEXT,
            refused_at TEXT,
            reviewed_at TEXT,
            status_reason TEXT)""",
        """CREATE TABLE IF NOT EXISTS library_desk_grants (
            library_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            granted_by TEXT NOT NULL,
            granted_at TEXT NOT NULL,
            PRIMARY KEY (library_id, device_id))""",
        f"""CREATE TABLE IF NOT EXISTS library_compositions (
            library_id TEXT NOT NULL,
            library_version {dialect.big_int} NOT NULL,
            built_at TEXT NOT NULL,
            composition TEXT NOT NULL,
            PRIMARY KEY (library_id, library_version))""",
        f"""CREATE TABLE IF NOT EXISTS authorisation_manifests (
            device_id TEXT NOT NULL,
            version {dialect.big_int} NOT NULL,
            issued_at TEXT NOT NULL,
            document TEXT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (device_id, version))""",
        f"""CREATE TABLE IF NOT EXISTS library_log (
            id {dialect.id_column},
            at TEXT NOT NULL,
            library_id TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE)""",
        "CREATE INDEX IF NOT EXISTS library_log_by_library ON library_log (library_id, id)",
    ]


@dataclass(frozen=True)
class LibraryRecord:
    """One library's row: what it is for, on what authority, and where it is in its life."""

    library_id: str
    name: str
    kind: str  # substantive | temporary
    purposes: tuple[str, ...]
    purpose_text: str
    legal_basis: str
    authority_reference: str
    default_for_custody: bool
    status: str
    requested_by: str
    requested_at: str
    authorised_by: str | None = None
    authorised_rank: str | None = None
    authorised_account: str | None = None
    authorised_at: str | None = None
    review_due: str | None = None
    expires_at: str | None = None
    suspended_at: str | None = None
    suspended_by: str | None = None
    retired_at: str | None = None
    refused_at: str | None = None
    reviewed_at: str | None = None
    status_reason: str | None = None


_COLUMNS = tuple(f.name for f in fields(LibraryRecord))


def _to_row(record: LibraryRecord) -> dict[str, Any]:
    row = asdict(record)
    row["purposes"] = ",".join(record.purposes)
    row["default_for_custody"] = int(record.default_for_custody)
    return row


def _from_row(row: Mapping[str, Any]) -> LibraryRecord:
    data = dict(row)
    data["purposes"] = tuple(p for p in str(data["purposes"]).split(",") if p)
    data["default_for_custody"] = bool(data["default_for_custody"])
    return LibraryRecord(**data)


@dataclass(frozen=True)
class LogEntry:
    id: int
    at: str
    library_id: str
    action: str
    actor: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def entry_digest(at: str, library_id: str, action: str, actor: str, detail: Mapping[str, Any]) -> str:
    """sha256 of the row's canonical bytes (the chain links digests, like the desks' audit chain)."""
    body = {"at": at, "library_id": library_id, "action": action, "actor": actor, "detail": dict(detail)}
    return hashlib.sha256(canonical_json(body)).hexdigest()


class LibraryStore(SqlStore):
    """Libraries, grants, compositions, manifests and their log, in SQLite (a path or ``sqlite:///path``) or
    PostgreSQL (``postgresql://``).

    ``create=False`` opens it to read only what is there: no table is made, so a reader (the fleet's
    :class:`central.fleet.library_register.LibraryRegister`) never races this store's own schema, and a
    database the governance store has not opened yet simply has no tables to read."""

    def __init__(self, url: str | Path, *, create: bool = True) -> None:
        super().__init__(url, schema=_schema if create else lambda _dialect: [], lock_id=_LOCK_ID, error=StoreError,
                         what="library store")

    # -- writes: each with its log row, in one transaction -------------------------------------------------

    @contextmanager
    def _logged(self, library_id: str, action: str, actor: str, detail: Mapping[str, Any],
                when: datetime | None) -> Iterator[str]:
        """A write transaction that appends one log row at its end; yields the moment it records."""
        at = iso(when or datetime.now(UTC))
        with self._write_transaction():
            yield at
            self._append_log(at, library_id, action, actor, detail)

    def _append_log(self, at: str, library_id: str, action: str, actor: str, detail: Mapping[str, Any]) -> None:
        if self.dialect.postgres:
            self._execute(f"SELECT pg_advisory_xact_lock({_LOG_LOCK_ID})")
        prev = self._scalar("SELECT hash FROM library_log ORDER BY id DESC LIMIT 1") or genesis_hash(LOG_CHAIN)
        digest = entry_digest(at, library_id, action, actor, detail)
        self._execute("INSERT INTO library_log (at, library_id, action, actor, detail, prev_hash, hash)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (at, library_id, action, actor, canonical_json(dict(detail)).decode(), prev,
                       link_hash(prev, digest)))

    def insert(self, record: LibraryRecord, actor: str, detail: Mapping[str, Any],
               when: datetime | None = None) -> bool:
        """Add a requested library and its log row; False (nothing written) if the id is taken."""
        row = _to_row(record)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            with self._logged(record.library_id, "request", actor, detail, when):
                if self._scalar("SELECT 1 FROM reference_libraries WHERE library_id = ?" + self.dialect.for_update,
                                (record.library_id,)):
                    raise _Unchanged
                self._execute(f"INSERT INTO reference_libraries ({names}) VALUES ({marks})", tuple(row.values()))
        except _Unchanged:
            return False
        return True

    def transition(self, library_id: str, from_statuses: Sequence[str], changes: Mapping[str, Any],
                   action: str, actor: str, detail: Mapping[str, Any],
                   when: datetime | None = None) -> LibraryRecord | None:
        """Apply ``changes`` only if the library is in one of ``from_statuses`` (checked under the row lock,
        so two authorisers at once cannot both act), with its log row; the new record, or None if not."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown or "library_id" in changes:
            raise ValueError(f"cannot change {sorted(unknown | ({'library_id'} & set(changes)))}")
        with self._write_transaction():
            row = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM reference_libraries WHERE library_id = ?"
                             + self.dialect.for_update, (library_id,))
            if not row or row[0]["status"] not in from_statuses:
                return None
            at = iso(when or datetime.now(UTC))
            if changes:
                values = _to_row(_from_row({**row[0], **{k: v for k, v in changes.items()}}))
                sets = ", ".join(f"{k} = ?" for k in changes)
                self._execute(f"UPDATE reference_libraries SET {sets} WHERE library_id = ?",
                              (*(values[k] for k in changes), library_id))
            self._append_log(at, library_id, action, actor, detail)
            return _from_row({**row[0], **changes})

    def grant(self, library_id: str, device_id: str, actor: str, when: datetime | None = None) -> bool:
        """Let ``device_id`` (or ``'*'``, every desk) search the library; False if it already may."""
        try:
            with self._logged(library_id, "grant", actor, {"device_id": device_id}, when) as at:
                if self._scalar("SELECT 1 FROM library_desk_grants WHERE library_id = ? AND device_id = ?",
                                (library_id, device_id)):
                    raise _Unchanged
                self._execute("INSERT INTO library_desk_grants (library_id, device_id, granted_by, granted_at)"
                              " VALUES (?, ?, ?, ?)", (library_id, device_id, actor, at))
        except _Unchanged:
            return False
        return True

    def withdraw(self, library_id: str, device_id: str, actor: str, when: datetime | None = None) -> bool:
        """The desk may no longer search the library (it drops out of that desk's next manifest)."""
        try:
            with self._logged(library_id, "withdraw", actor, {"device_id": device_id}, when):
                cur = self._execute("DELETE FROM library_desk_grants WHERE library_id = ? AND device_id = ?",
                                    (library_id, device_id))
                if cur.rowcount != 1:
                    raise _Unchanged
        except _Unchanged:
            return False
        return True

    def log_action(self, library_id: str, action: str, actor: str, detail: Mapping[str, Any],
                   when: datetime | None = None) -> None:
        """Record an action that changes no row here (a manifest published, a publication that failed)."""
        with self._logged(library_id, action, actor, detail, when):
            pass

    def record_composition(self, library_id: str, version: int, composition: Mapping[str, Any],
                           built_at: datetime | None = None) -> None:
        """What version ``version`` holds, kept with the authorisation (a rebuild of a version replaces it)."""
        at = iso(built_at or datetime.now(UTC))
        with self._logged(library_id, "built", "enrolment", {"library_version": version}, built_at):
            self._execute("DELETE FROM library_compositions WHERE library_id = ? AND library_version = ?",
                          (library_id, version))
            self._execute("INSERT INTO library_compositions (library_id, library_version, built_at, composition)"
                          " VALUES (?, ?, ?, ?)", (library_id, version, at, json.dumps(dict(composition))))

    def add_manifest(self, device_id: str, issued_at: datetime, document: bytes, digest: str,
                     version: int) -> bool:
        """Keep a signed manifest; False if that desk already has this version or a newer one."""
        with self._write_transaction():
            newest = self._scalar("SELECT MAX(version) FROM authorisation_manifests WHERE device_id = ?",
                                  (device_id,))
            if newest is not None and int(newest) >= version:
                return False
            self._execute("INSERT INTO authorisation_manifests (device_id, version, issued_at, document, digest)"
                          " VALUES (?, ?, ?, ?, ?)", (device_id, version, iso(issued_at), document.decode(),
                                                      digest))
        return True

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, library_id: str) -> LibraryRecord | None:
        with self._lock:
            rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM reference_libraries WHERE library_id = ?",
                              (library_id,))
        return _from_row(rows[0]) if rows else None

    def all(self) -> list[LibraryRecord]:
        with self._lock:
            rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM reference_libraries ORDER BY name, library_id")
        return [_from_row(r) for r in rows]

    def grants(self, library_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._rows("SELECT device_id, granted_by, granted_at FROM library_desk_grants"
                              " WHERE library_id = ? ORDER BY device_id", (library_id,))

    def granted_to(self, device_id: str) -> list[LibraryRecord]:
        """Libraries granted to this desk or to every desk, whatever their status."""
        cols = ", ".join(f"l.{c}" for c in _COLUMNS)
        with self._lock:
            rows = self._rows(f"SELECT DISTINCT {cols} FROM reference_libraries l JOIN library_desk_grants g"
                              " ON g.library_id = l.library_id WHERE g.device_id IN (?, ?) ORDER BY l.library_id",
                              (device_id, EVERY_DESK))
        return [_from_row(r) for r in rows]

    def granted_devices(self) -> list[str]:
        """Every desk named in a grant (not ``'*'``)."""
        with self._lock:
            return [r["device_id"] for r in self._rows(
                "SELECT DISTINCT device_id FROM library_desk_grants WHERE device_id <> ? ORDER BY device_id",
                (EVERY_DESK,))]

    def has_fleet_grant(self) -> bool:
        """Whether any library is granted to every desk (``'*'``)."""
        with self._lock:
            return bool(self._scalar("SELECT 1 FROM library_desk_grants WHERE device_id = ? LIMIT 1",
                                     (EVERY_DESK,)))

    def manifest_devices(self) -> list[str]:
        """Every desk a manifest has been signed for."""
        with self._lock:
            return [r["device_id"] for r in self._rows(
                "SELECT DISTINCT device_id FROM authorisation_manifests ORDER BY device_id")]

    def compositions(self, library_id: str | None = None) -> list[dict[str, Any]]:
        """Each built version's composition (newest version first), for one library or all."""
        where, args = ("WHERE library_id = ?", (library_id,)) if library_id else ("", ())
        with self._lock:
            rows = self._rows("SELECT library_id, library_version, built_at, composition FROM library_compositions"
                              f" {where} ORDER BY library_id, library_version DESC", args)
        return [{**r, "library_version": int(r["library_version"]), "composition": json.loads(r["composition"])}
                for r in rows]

    def newest_manifest(self, device_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = self._rows("SELECT device_id, version, issued_at, document, digest FROM authorisation_manifests"
                              " WHERE device_id = ? ORDER BY version DESC LIMIT 1", (device_id,))
        if not rows:
            return None
        return {**rows[0], "version": int(rows[0]["version"])}

    def manifest_version(self, device_id: str) -> int:
        """The newest version signed for this desk (0 if none)."""
        with self._lock:
            newest = self._scalar("SELECT MAX(version) FROM authorisation_manifests WHERE device_id = ?",
                                  (device_id,))
        return 0 if newest is None else int(newest)

    def log(self, library_id: str | None = None, limit: int = 1000) -> list[LogEntry]:
        """The log, oldest first, for one library or all."""
        where, args = ("WHERE library_id = ?", (library_id,)) if library_id else ("", ())
        with self._lock:
            rows = self._rows("SELECT id, at, library_id, action, actor, detail, prev_hash, hash FROM library_log"
                              f" {where} ORDER BY id LIMIT {int(limit)}", args)
        return [LogEntry(int(r["id"]), r["at"], r["library_id"], r["action"], r["actor"], json.loads(r["detail"]),
                         r["prev_hash"], r["hash"]) for r in rows]

    def log_size(self) -> int:
        with self._lock:
            return int(self._scalar("SELECT COUNT(*) FROM library_log") or 0)

    def verify_log(self) -> list[str]:
        """Walk the whole chain; each problem in plain words (empty when every row is as written)."""
        problems: list[str] = []
        expected_prev = genesis_hash(LOG_CHAIN)
        with self._lock:
            rows = self._rows("SELECT id, at, library_id, action, actor, detail, prev_hash, hash FROM library_log"
                              " ORDER BY id")
        for r in rows:
            if r["prev_hash"] != expected_prev:
                problems.append(f"Log entry {r['id']} does not follow the entry before it (one was removed, "
                                "inserted or changed).")
            digest = entry_digest(r["at"], r["library_id"], r["action"], r["actor"], json.loads(r["detail"]))
            if link_hash(r["prev_hash"], digest) != r["hash"]:
                problems.append(f"Log entry {r['id']} ({r['action']} of {r['library_id']}) was changed after it "
                                "was written.")
            expected_prev = r["hash"]
        return problems


class _Unchanged(Exception):
    """Raised inside a logged transaction to roll it (and its log row) back when nothing would change."""
