"""The auditor's case view: finding a case, its timeline across desk and central, details in words,
one spreadsheet file per kind of event (safe to open), and an export's proof checked on the page."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from central.audit import labels
from central.audit.cases import group_cases
from central.audit.filter import EventFilter
from central.audit.spreadsheet import BOM, kind_csv, safe_cell
from central.audit.store import AuditStore
from central.audit.timeline import CENTRAL, DESK, assemble
from central.fleet.registry_store import RegistryStore
from central.peer_review.store import PeerReviewStore
from tests.central.case_trail import CASE, CUSTODY_REF, OTHER_CASE, SOUTH_CASE, seed
from tests.central_signin import csrf_token

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reviews(app: Flask) -> PeerReviewStore:
    store: PeerReviewStore = app.extensions["central.peer_reviews"]
    return store


@pytest.fixture
def trail(app_store: AuditStore, app_registry: RegistryStore, reviews: PeerReviewStore):  # type: ignore[no-untyped-def]
    return seed(app_store, app_registry, reviews)


# --- the store's filters ---

def test_store_finds_a_case_by_id_and_by_custody_record_in_sqlite_and_postgres(database_url: str) -> None:
    store, registry, reviews = AuditStore(database_url), RegistryStore(database_url), PeerReviewStore(database_url)
    try:
        seed(store, registry, reviews)
        by_id = store.query(EventFilter(case_id=CASE))
        assert len(by_id) == 7 and {r["details"]["case_id"] for r in by_id} == {CASE}
        by_ref = store.query(EventFilter(custody_ref=CUSTODY_REF))
        assert {r["event_id"] for r in by_ref} == {r["event_id"] for r in by_id}
        # exact match: a prefix, another case or the wrong case of letters find nothing
        assert store.count(EventFilter(case_id=CASE[:4])) == 0
        assert store.count(EventFilter(custody_ref="-1+2 cr")) == 0
        assert store.count(EventFilter(case_id=CASE, device_id="desk-south")) == 0
        assert store.count(EventFilter(with_case=True)) == 9  # the sign-in carries no case
        assert store.type_counts(EventFilter(case_id=CASE)) == {
            "adjudication": 1, "approval": 1, "deletion": 1, "peer_review": 2, "search": 1, "submission": 1}
        oldest_first = [r["type"] for r in store.query_oldest_first(EventFilter(case_id=CASE))]
        assert oldest_first[:4] == ["submission", "approval", "search", "adjudication"]
    finally:
        store.close()
        registry.close()
        reviews.close()


# --- labels, cases and the timeline (pure) ---

def test_details_read_as_words_and_lists_whole() -> None:
    lines = {d.key: d for d in labels.details({
        "age_band": "18_plus", "destroyed": ["probe image", "probe template"], "doubts_recorded": True,
        "top_score": None, "reason": "false_details", "apparent_under_18": 0, "something_new": "kept_as_sent"})}
    assert (lines["age_band"].label, lines["age_band"].text) == ("Apparent age", "18 or over")
    assert lines["destroyed"].items == ("probe image", "probe template")
    assert lines["doubts_recorded"].text == "Yes" and lines["top_score"].text == "Not recorded"
    assert lines["reason"].text == "Suspected of giving false details"
    assert lines["apparent_under_18"].text == "No"
    assert (lines["something_new"].label, lines["something_new"].text) == ("Something new", "kept_as_sent")
    long_reason = "x" * 500
    assert labels.details({"why": long_reason})[0].text == long_reason  # never cut off


def test_desk_labels_match_the_desks_own_words() -> None:
    """Central repeats the desk's words (it may not import the desk): they must not drift apart."""
    from appliance.services.policy import AGE_BAND_LABELS, ROLE_LABELS, AgeBand

    assert {b.value: AGE_BAND_LABELS[b] for b in AgeBand} == labels.VALUES["age_band"]
    for role, label in ROLE_LABELS.items():
        assert labels.VALUES["approver_role"][role.value] in label
    from core.events import EVENT_TYPES

    assert set(labels.EVENT_TYPES) == set(EVENT_TYPES) == set(labels.EVENT_KINDS)


def test_timeline_merges_desk_and_central_on_one_utc_clock() -> None:
    desk = [
        {"device_id": "d-1", "seq": 2, "occurred_at": "2026-12-01T10:10:00+01:00", "type": "search",
         "actor": "pc", "outcome": "candidates_shown", "details": {"case_id": "C1", "candidates": 3}},
        {"device_id": "d-1", "seq": 1, "occurred_at": "2026-12-01T09:01:00", "type": "submission",
         "actor": "pc", "outcome": "awaiting_approval", "details": {"case_id": "C1", "age_band": "13_15"}},
    ]
    central = [{"at": "2026-12-01T09:05:00.000+00:00", "request_id": "r-1", "device_id": "d-1",
                "action": "decided", "actor": "reviewer",
                "detail": "confirmed_not_viable; decisions {'2': 'not_viable', '3': 'viable'}"}]
    entries = assemble(desk, central)
    assert [(e.source, e.what) for e in entries] == [
        (DESK, "Search requested"), (CENTRAL, "Peer review decided"), (DESK, "Search")]
    assert entries[2].at_text == "01 Dec 2026 09:10:00 UTC"
    assert [d.text for d in entries[0].details] == ["13 to 15"]  # the case id is the page's title, not a detail
    decided = {d.key: d for d in entries[1].details}  # central's log line, in words
    assert decided["outcome"].text == "No candidate viable (confirmed by the reviewer)"
    assert decided["decisions"].items == ("Candidate 2: Not viable", "Candidate 3: Viable")


def test_cases_are_grouped_per_desk_and_case() -> None:
    rows = [{"device_id": d, "actor": a, "occurred_at": t, "details": det} for d, a, t, det in [
        ("d-1", "pc1", "2026-12-01T09:00:00+00:00", {"case_id": "C1", "custody_ref": "R1"}),
        ("d-1", "insp", "2026-12-01T09:30:00+00:00", {"case_id": "C1", "custody_ref": "R1"}),
        ("d-2", "pc2", "2026-12-02T09:00:00+00:00", {"case_id": "C1", "custody_ref": "R9"}),
        ("d-1", "pc1", "2026-12-01T08:00:00+00:00", {})]]
    cases = group_cases(rows)
    assert [(c.device_id, c.case_id, c.events) for c in cases] == [("d-2", "C1", 1), ("d-1", "C1", 2)]
    assert cases[1].people == {"pc1", "insp"} and cases[1].custody_ref == "R1"


# --- spreadsheet files ---

@pytest.mark.parametrize("text, shown", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-1+2 CR", "'-1+2 CR"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("CR-2026-1", "CR-2026-1"), ("", "")])
def test_formula_starts_are_defused(text: str, shown: str) -> None:
    assert safe_cell(text) == shown


def test_a_kind_file_has_one_header_and_one_kind_of_row() -> None:
    rows = [{"device_id": "d-1", "seq": 4, "occurred_at": "2026-12-01T10:10:00+01:00", "type": "deletion",
             "actor": "=cmd", "outcome": "destroyed", "hash": "ab" * 32,
             "details": {"case_id": "C1", "custody_ref": "@R1", "destroyed": ["probe image", "face crops"]}}]
    text = "".join(kind_csv(rows))
    assert text.startswith(BOM) and "\r\n" in text
    table = list(csv.reader(io.StringIO(text.removeprefix(BOM))))
    assert table[0] == ["Time (UTC)", "Desk", "Sequence number", "Case", "Custody record", "Person", "Outcome",
                        "Destroyed", "Event hash (as in the evidence export)"]
    assert table[1] == ["2026-12-01 09:10:00", "d-1", "4", "C1", "'@R1", "'=cmd", "Destroyed",
                        "probe image; face crops", "ab" * 32]


# --- the pages ---

def test_find_a_case_by_each_field(client: FlaskClient, trail) -> None:  # type: ignore[no-untyped-def]
    def found(query: str) -> set[str]:
        page = client.get(f"/audit/cases?{query}").get_data(as_text=True)
        return set(re.findall(r">Case ([0-9A-F]{8})<", page))

    assert found(f"case={CASE.lower()}") == {CASE}  # typed in lower case: still found
    assert found("custody_ref=-1%2B2+CR") == {CASE}
    assert found("device=desk-south") == {SOUTH_CASE}
    assert found("actor=officer2") == {OTHER_CASE}
    assert found("from=2026-12-02&to=2026-12-03") == {OTHER_CASE, SOUTH_CASE}
    assert found("to=2026-12-01") == {CASE}  # "to" includes its day
    assert found("case=FFFFFFFF") == set()
    assert "No case matches" in client.get("/audit/cases?case=FFFFFFFF").get_data(as_text=True)
    assert client.get("/audit/cases?from=yesterday").status_code == 400
    page = client.get("/audit/cases").get_data(as_text=True)
    assert "cases found" not in page and "Find cases" in page  # nothing asked, nothing listed


def test_case_timeline_shows_desk_and_central_events_in_words(client: FlaskClient, trail) -> None:  # type: ignore[no-untyped-def]
    response = client.get(f"/audit/cases/desk-north/{CASE}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    order = [page.index(s) for s in ("Search requested: Waiting for approval", "Approval: Approved",
                                     "Search: Candidates shown", "Candidates judged: Recorded",
                                     "Deletion: Destroyed")]
    assert order == sorted(order)
    assert "Peer review request received" in page and "Peer review decided" in page  # central's own record
    assert "<li>Candidate 2: Not viable</li>" in page and "confirmed_not_viable" not in page
    assert "<dd>18 or over</dd>" in page and "<dd>Suspected of giving false details</dd>" in page
    assert "<li>probe image</li><li>probe template</li><li>face crops</li>" in page
    assert "age_band" not in page and "18_plus" not in page and "…" not in page
    assert "01 Dec 2026 09:10:00 UTC" in page  # the +01:00 desk time, shown in UTC
    assert OTHER_CASE not in page and "sgt.south" not in page
    assert f'href="/audit/export/deletion.csv?device=desk-north&amp;case={CASE}"' in page
    assert client.get(f"/audit/cases/desk-south/{CASE}").status_code == 404
    assert client.get("/audit/cases/desk-north/not-a-case!").status_code == 404


def test_event_list_shows_details_whole_with_a_link_to_the_case(client: FlaskClient, trail) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/audit?type=deletion").get_data(as_text=True)
    assert "<dt>Destroyed</dt>" in page and "<li>face crops</li>" in page
    assert f"/audit/cases/desk-north/{CASE}" in page
    assert "destroyed=[" not in page
    searches = client.get("/audit?type=search&device=desk-north").get_data(as_text=True)
    assert '<time datetime="2026-12-01T10:10:00.000+01:00">2026-12-01 09:10:00</time>' in searches  # UTC column
    assert "1 match the filter" in client.get("/audit?custody_ref=-1%2B2+CR&type=search").get_data(as_text=True)


def test_spreadsheet_exports_one_kind_per_file(client: FlaskClient, trail) -> None:  # type: ignore[no-untyped-def]
    page = client.get(f"/audit/cases/desk-north/{CASE}").get_data(as_text=True)
    links = re.findall(r'href="(/audit/export/([a-z_]+)\.csv\?[^"]*)"', page)
    assert {kind for _url, kind in links} == {"submission", "approval", "search", "adjudication", "peer_review",
                                             "deletion"}
    for url, kind in links:
        response = client.get(url.replace("&amp;", "&"))
        assert response.status_code == 200
        assert response.headers["Content-Disposition"].startswith(
            f'attachment; filename="audit-{labels.EVENT_KINDS[kind]}-')
        text = response.data.decode("utf-8")
        assert text.startswith(BOM)
        table = list(csv.DictReader(io.StringIO(text.removeprefix(BOM))))
        assert table and all(r["Case"] == CASE for r in table)
        assert all(r["Custody record"] == "'" + CUSTODY_REF for r in table)  # never a formula
        assert len({tuple(r) for r in table}) == 1  # one header: every row has the same columns
    searches = list(csv.DictReader(io.StringIO(
        client.get(f"/audit/export/search.csv?case={CASE}").data.decode("utf-8-sig"))))
    assert searches[0]["Time (UTC)"] == "2026-12-01 09:10:00"
    assert searches[0]["Apparent age"] == "18 or over" and searches[0]["Highest score"] == "0.6123"
    assert client.get("/audit/export/reboot.csv").status_code == 404


def _upload(client: FlaskClient, body: bytes, name: str = "export.jsonl"):  # type: ignore[no-untyped-def]
    token = csrf_token(client.get("/audit/verify").get_data(as_text=True))
    return client.post("/audit/verify", data={"csrf_token": token, "export": (io.BytesIO(body), name)},
                       content_type="multipart/form-data")


def test_the_page_and_the_command_line_agree_on_an_export(client: FlaskClient, trail, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for fmt in ("jsonl", "csv"):
        body = client.get(f"/audit/export.{fmt}?case={CASE}").data
        page = _upload(client, body, f"case.{fmt}").get_data(as_text=True)
        assert "The proof holds" in page and f"OK case.{fmt}: 7 events" in page
        path = tmp_path / f"case.{fmt}"
        path.write_bytes(body)
        cli = subprocess.run([sys.executable, "-m", "central.audit", "verify", str(path)], cwd=ROOT,
                             capture_output=True, text=True, check=False)
        assert cli.returncode == 0 and "7 events" in cli.stdout
    tampered = client.get(f"/audit/export.jsonl?case={CASE}").data.replace(b'"18_plus"', b'"13_15"', 1)
    page = _upload(client, tampered).get_data(as_text=True)
    assert "The proof does not hold" in page and "edited" in page
    empty = _upload(client, b"", "empty.jsonl")
    assert empty.status_code == 422 and "empty.jsonl is empty" in empty.get_data(as_text=True)
    binary = _upload(client, b"\xff\xfe\x00garbage", "photo.jpg")
    assert binary.status_code == 422 and "cannot be read as UTF-8" in binary.get_data(as_text=True)
