"""Custody cases in the encrypted device database, with the probe's biometrics kept apart.

The case row is the lasting record (who, when, why, outcome: no biometric
data). The probe image, its template and any face crops live in their own
tables only while the case is open; ``destroy_biometrics`` deletes them and
then checkpoints the WAL with TRUNCATE, because in WAL mode deleted bytes
survive in the -wal file and (until checkpointed) in the main file's old
pages. ``secure_delete`` (on whenever SQLCipher has a key) zeroes the freed
space, so after this the bytes are gone from the database file, its WAL and
the journal.

A viable match's probe image, face thumbnail and candidate list stay until
the retention period central sets ends; ``purge_retained`` then destroys them
the same way, and records when in ``biometrics_destroyed_at`` (the case row
and the Match Report's text stay; see ``appliance.services.retention``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.storage.device_db import DeviceDatabase

logger = logging.getLogger(__name__)

#: The library every row from before desks held several libraries came from (``LibrarySettings.library_id``'s
#: default): record ids are per library, so a candidate is named by (library id, record id).
LEGACY_LIBRARY_ID = "national"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    custody_ref TEXT NOT NULL,
    reason TEXT NOT NULL,
    checks TEXT NOT NULL,
    checks_detail TEXT NOT NULL,
    age_band TEXT NOT NULL,
    disability INTEGER NOT NULL,
    predates_reassignment INTEGER NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    state TEXT NOT NULL,
    required_role TEXT NOT NULL,
    advice_required INTEGER NOT NULL,
    advice_by TEXT, advice_text TEXT, advice_at REAL,
    approved_by TEXT, approved_at REAL,
    apparent_under_18 INTEGER, apparent_under_16 INTEGER,
    library_version INTEGER, searched_at REAL,
    adjudicated_by TEXT, adjudicated_at REAL, doubts TEXT,
    outcome TEXT, closed_at REAL, retention TEXT,
    biometrics_destroyed_at REAL,
    returned_by TEXT, returned_at REAL, return_note TEXT,
    refused_by TEXT, refused_at REAL, refusal_reason TEXT,
    libraries TEXT, libraries_searched TEXT
);
CREATE TABLE IF NOT EXISTS case_probes (
    case_id TEXT PRIMARY KEY,
    image BLOB NOT NULL,
    template BLOB,
    thumbnail BLOB,
    quality TEXT,
    face_index INTEGER,
    faces_found INTEGER NOT NULL,
    captured_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS case_crops (
    case_id TEXT NOT NULL, face_index INTEGER NOT NULL, jpeg BLOB NOT NULL,
    PRIMARY KEY (case_id, face_index)
);
CREATE TABLE IF NOT EXISTS case_candidates (
    case_id TEXT NOT NULL, rank INTEGER NOT NULL, record_id INTEGER NOT NULL, score REAL NOT NULL,
    decision TEXT, subject_ref TEXT, library_id TEXT NOT NULL DEFAULT 'national',
    PRIMARY KEY (case_id, rank)
);
CREATE TABLE IF NOT EXISTS match_reports (
    case_id TEXT PRIMARY KEY, rank INTEGER NOT NULL, fields TEXT NOT NULL, author TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS case_comparisons (
    case_id TEXT NOT NULL, rank INTEGER NOT NULL, morphology TEXT NOT NULL, author TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (case_id, rank)
);
"""

# Biometric tables: everything here is destroyed when a case closes without a viable match, and when a
# viable match's retention period ends.
# The officer's feature-by-feature comparisons of the probe with a candidate describe the detainee's face, so
# they go with the candidate list (a Match Report keeps its own copy of the one it reports).
BIOMETRIC_TABLES = ("case_probes", "case_crops", "case_candidates", "case_comparisons")
# Columns added after the first release: (table, name, declaration), added to an older database when opened.
_ADDED_COLUMNS = (("cases", "biometrics_destroyed_at", "REAL"), ("cases", "lead_subject", "TEXT"),
                  ("cases", "returned_by", "TEXT"), ("cases", "returned_at", "REAL"),
                  ("cases", "return_note", "TEXT"), ("cases", "refused_by", "TEXT"),
                  ("cases", "refused_at", "REAL"), ("cases", "refusal_reason", "TEXT"),
                  ("match_reports", "morphology", "TEXT"), ("case_candidates", "subject_ref", "TEXT"),
                  # Several governed libraries (#18): the libraries chosen on the form and those searched (JSON),
                  # and the library each candidate came from. A desk's older rows all came from its one
                  # library, the lineage every desk had before: "national" (core.keywrap's default id).
                  ("cases", "libraries", "TEXT"), ("cases", "libraries_searched", "TEXT"),
                  ("case_candidates", "library_id", f"TEXT NOT NULL DEFAULT '{LEGACY_LIBRARY_ID}'"))


@dataclass(frozen=True)
class ProbeRow:
    image: bytes
    template: bytes | None
    thumbnail: bytes | None
    quality: dict[str, Any] | None
    face_index: int | None
    faces_found: int
    captured_at: float | None = None

    @property
    def version(self) -> str:
        """Names this photo and face choice: pages put it in every image URL and form that refers to the probe,
        so a retake or a new face choice can never be shown or searched under an older page's name."""
        digest = hashlib.sha256(self.image)
        digest.update(b"|%d|" % (-1 if self.face_index is None else self.face_index))
        digest.update(self.thumbnail or b"")
        return digest.hexdigest()[:20]


@dataclass(frozen=True)
class CandidateRow:
    rank: int
    record_id: int
    score: float
    decision: str | None
    # Who the reference image is of, as the library said at the search: decisions are taken per person.
    subject_ref: str | None = None
    # Which library the record is in: record ids are per library, so (library_id, record_id) names the image.
    library_id: str = LEGACY_LIBRARY_ID


class CaseStore:
    def __init__(self, db: DeviceDatabase) -> None:
        self._db = db
        with db.lock:
            db.conn.executescript(_SCHEMA)
            for table, name, declaration in _ADDED_COLUMNS:
                have = {row[1] for row in db.conn.execute(f"PRAGMA table_info({table})")}
                if name not in have:
                    db.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
            db.conn.commit()

    # The case record -------------------------------------------------------
    def insert(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        with self._db.lock:
            self._db.conn.execute(f"INSERT INTO cases ({cols}) VALUES ({', '.join('?' * len(row))})",
                                  tuple(row.values()))
            self._db.conn.commit()

    def update(self, case_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._db.lock:
            self._db.conn.execute(f"UPDATE cases SET {sets} WHERE case_id = ?", (*fields.values(), case_id))
            self._db.conn.commit()

    def get(self, case_id: str) -> dict[str, Any] | None:
        with self._db.lock:
            cur = self._db.conn.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,))
            row = cur.fetchone()
            names = [d[0] for d in cur.description]
        return dict(zip(names, row, strict=True)) if row else None

    def list(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._db.lock:
            cur = self._db.conn.execute("SELECT * FROM cases ORDER BY submitted_at DESC LIMIT ?", (limit,))
            rows = cur.fetchall()
            names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in rows]

    # Probe biometrics (open cases only) ---------------------------------------
    def put_probe(self, case_id: str, probe: ProbeRow, now: float) -> None:
        with self._db.lock:
            self._db.conn.execute(
                "INSERT OR REPLACE INTO case_probes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, probe.image, probe.template, probe.thumbnail,
                 json.dumps(probe.quality) if probe.quality is not None else None,
                 probe.face_index, probe.faces_found, now))
            self._db.conn.commit()

    def probe(self, case_id: str) -> ProbeRow | None:
        with self._db.lock:
            row = self._db.conn.execute(
                "SELECT image, template, thumbnail, quality, face_index, faces_found, captured_at FROM case_probes"
                " WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            return None
        return ProbeRow(bytes(row[0]), bytes(row[1]) if row[1] is not None else None,
                        bytes(row[2]) if row[2] is not None else None,
                        json.loads(row[3]) if row[3] else None, row[4], int(row[5]), row[6])

    def put_crops(self, case_id: str, crops: list[bytes]) -> None:
        with self._db.lock:
            self._db.conn.execute("DELETE FROM case_crops WHERE case_id = ?", (case_id,))
            self._db.conn.executemany("INSERT INTO case_crops VALUES (?, ?, ?)",
                                      [(case_id, i, jpeg) for i, jpeg in enumerate(crops)])
            self._db.conn.commit()

    def crop(self, case_id: str, face_index: int) -> bytes | None:
        with self._db.lock:
            row = self._db.conn.execute("SELECT jpeg FROM case_crops WHERE case_id = ? AND face_index = ?",
                                        (case_id, face_index)).fetchone()
        return bytes(row[0]) if row else None

    def crop_count(self, case_id: str) -> int:
        with self._db.lock:
            return int(self._db.conn.execute("SELECT count(*) FROM case_crops WHERE case_id = ?",
                                             (case_id,)).fetchone()[0])

    def delete_crops(self, case_id: str) -> None:
        with self._db.lock:
            self._db.conn.execute("DELETE FROM case_crops WHERE case_id = ?", (case_id,))
            self._db.conn.commit()
            self._checkpoint()

    # Candidates and adjudication ----------------------------------------------
    def put_candidates(self, case_id: str, rows: list[CandidateRow]) -> None:
        with self._db.lock:
            self._db.conn.execute("DELETE FROM case_candidates WHERE case_id = ?", (case_id,))
            self._db.conn.executemany(
                "INSERT INTO case_candidates (case_id, rank, record_id, score, decision, subject_ref, library_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(case_id, c.rank, c.record_id, c.score, c.decision, c.subject_ref, c.library_id) for c in rows])
            self._db.conn.commit()

    def candidates(self, case_id: str) -> list[CandidateRow]:
        with self._db.lock:
            rows = self._db.conn.execute("SELECT rank, record_id, score, decision, subject_ref, library_id"
                                         " FROM case_candidates WHERE case_id = ? ORDER BY rank",
                                         (case_id,)).fetchall()
        return [CandidateRow(int(r[0]), int(r[1]), float(r[2]), r[3], r[4], r[5] or LEGACY_LIBRARY_ID)
                for r in rows]

    def set_decisions(self, case_id: str, decisions: dict[int, str]) -> None:
        with self._db.lock:
            self._db.conn.executemany("UPDATE case_candidates SET decision = ? WHERE case_id = ? AND rank = ?",
                                      [(d, case_id, rank) for rank, d in decisions.items()])
            self._db.conn.commit()

    def put_match_report(self, case_id: str, rank: int, fields: dict[str, str], author: str, now: float,
                         morphology: dict[str, Any] | None = None) -> None:
        with self._db.lock:
            self._db.conn.execute(
                "INSERT OR REPLACE INTO match_reports (case_id, rank, fields, author, created_at, morphology)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (case_id, rank, json.dumps(fields), author, now,
                 json.dumps(morphology) if morphology is not None else None))
            self._db.conn.commit()

    def match_report(self, case_id: str) -> dict[str, Any] | None:
        with self._db.lock:
            row = self._db.conn.execute("SELECT rank, fields, author, created_at, morphology FROM match_reports"
                                        " WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            return None
        return {"rank": row[0], "fields": json.loads(row[1]), "author": row[2], "created_at": row[3],
                "morphology": json.loads(row[4]) if row[4] else None}

    # Feature-by-feature comparisons (with the candidate list: destroyed with it) --------------
    def put_comparison(self, case_id: str, rank: int, morphology: dict[str, Any], author: str, now: float) -> None:
        with self._db.lock:
            self._db.conn.execute("INSERT OR REPLACE INTO case_comparisons VALUES (?, ?, ?, ?, ?)",
                                  (case_id, rank, json.dumps(morphology), author, now))
            self._db.conn.commit()

    def comparisons(self, case_id: str) -> dict[int, dict[str, Any]]:
        """Each compared candidate's findings, by rank."""
        with self._db.lock:
            rows = self._db.conn.execute("SELECT rank, morphology FROM case_comparisons WHERE case_id = ?"
                                         " ORDER BY rank", (case_id,)).fetchall()
        return {int(r[0]): json.loads(r[1]) for r in rows}

    # Destruction -----------------------------------------------------------------
    def destroy_biometrics(self, case_id: str, *, keep_viable: bool = False) -> list[str]:
        """Delete the probe's biometrics and checkpoint the WAL; return what was destroyed (for the audit).

        With ``keep_viable`` the probe image, its face thumbnail and the candidate list stay with the
        Match Report (the policy allows retaining a viable match); the template and crops still go.
        """
        with self._db.lock:
            conn = self._db.conn
            if keep_viable:
                conn.execute("UPDATE case_probes SET template = NULL WHERE case_id = ?", (case_id,))
                conn.execute("DELETE FROM case_crops WHERE case_id = ?", (case_id,))
                destroyed = ["probe template", "face crops"]
            else:
                compared = conn.execute("SELECT count(*) FROM case_comparisons WHERE case_id = ?",
                                        (case_id,)).fetchone()[0]
                self._delete_biometric_rows(case_id)
                destroyed = ["probe image", "probe template", "probe face thumbnail", "face crops",
                             "candidate list"] + (["feature comparisons"] if compared else [])
            conn.commit()
            self._checkpoint()
        return destroyed

    def retained_due(self, state: str, closed_before: float) -> list[dict[str, Any]]:
        """Cases in ``state`` closed before ``closed_before`` whose retained biometrics are not yet destroyed."""
        with self._db.lock:
            cur = self._db.conn.execute(
                "SELECT * FROM cases WHERE state = ? AND closed_at IS NOT NULL AND closed_at < ?"
                " AND biometrics_destroyed_at IS NULL ORDER BY closed_at, case_id", (state, closed_before))
            rows = cur.fetchall()
            names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in rows]

    def purge_retained(self, case_id: str, now: float, retention: str,
                       record: Callable[[list[str]], object]) -> list[str] | None:
        """Destroy what a viable match kept (probe image, thumbnail, candidate list, anything left) at the end
        of its retention period; mark the case; return what was destroyed, or None if already done.

        ``record(destroyed)`` writes the audit event inside the same transaction: the outbox commits on this
        shared connection, so the deletion, the case's mark and its audit event are committed together or
        not at all (a crash cannot leave data destroyed with no event, nor an event for data still held).
        Then the WAL is checkpointed with TRUNCATE, as for a no-viable-match deletion.
        """
        with self._db.lock:
            conn = self._db.conn
            try:
                row = conn.execute("SELECT biometrics_destroyed_at FROM cases WHERE case_id = ?",
                                   (case_id,)).fetchone()
                if row is None or row[0] is not None:
                    return None
                probe = conn.execute("SELECT image IS NOT NULL, template IS NOT NULL, thumbnail IS NOT NULL"
                                     " FROM case_probes WHERE case_id = ?", (case_id,)).fetchone()
                crops = conn.execute("SELECT count(*) FROM case_crops WHERE case_id = ?", (case_id,)).fetchone()[0]
                candidates = conn.execute("SELECT count(*) FROM case_candidates WHERE case_id = ?",
                                          (case_id,)).fetchone()[0]
                compared = conn.execute("SELECT count(*) FROM case_comparisons WHERE case_id = ?",
                                        (case_id,)).fetchone()[0]
                destroyed = [name for name, held in (
                    ("probe image", probe is not None and probe[0]),
                    ("probe template", probe is not None and probe[1]),
                    ("probe face thumbnail", probe is not None and probe[2]),
                    ("face crops", crops > 0),
                    (f"candidate list ({candidates} candidates)", candidates > 0),
                    ("feature comparisons", compared > 0)) if held]
                self._delete_biometric_rows(case_id)
                conn.execute("UPDATE cases SET biometrics_destroyed_at = ?, retention = ? WHERE case_id = ?",
                             (now, retention, case_id))
                record(destroyed)  # commits everything above with the audit event
                conn.commit()  # in case ``record`` did not write through this connection
            except BaseException:
                conn.rollback()
                raise
            self._checkpoint()
        return destroyed

    def _delete_biometric_rows(self, case_id: str) -> None:
        """Every row of the case in every biometric table: the one deletion both closing with no viable match
        and the end of a viable match's retention period use (the caller holds the lock and commits)."""
        for table in BIOMETRIC_TABLES:
            self._db.conn.execute(f"DELETE FROM {table} WHERE case_id = ?", (case_id,))

    def _checkpoint(self) -> None:
        busy, _, _ = self._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning("WAL checkpoint was blocked; deleted pages are zeroed but the WAL was not truncated")
