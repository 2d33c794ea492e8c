"""A damaged library on a running desk is refused at once and re-fetched from central by itself (issue #21).

Real parts throughout: the desk (``open_desk``: SQLCipher device database, real face pipeline), central's TUF
repository served over HTTPS to the enrolled desk, libraries as SQLCipher snapshots. One bit of a held
library's file is flipped on disk while the desk runs, as a failing sector would; the desk's page check finds
it. What is checked is what staff and auditors observe: the refusal in plain words while the other libraries
keep serving, the ``device_fault`` events in the chain, the library served again after the re-fetch, and a
re-fetched file that is itself bad being refused (the library stays closed and the desk tries again).
"""

# ruff: noqa: F811 (clock, desk and rfr_team are fixtures imported from test_desk_libraries, named as arguments)
from __future__ import annotations

import dataclasses
import socket

import pytest

from appliance.runtime import Desk, open_desk
from appliance.services.integrity import library_problems
from appliance.services.library import LibraryRefusedError
from central.publish.describe import describe_delta, describe_full
from library.cipher import PAGE_SIZE
from library.delta import make_delta
from library.snapshot import Snapshot
from library.store import LibraryStore
from tests.audit_support import wait_until
from tests.desk_authorisation import manifest, seed_authorisation
from tests.updates.test_desk_libraries import (  # noqa: F401 (the fixtures clock, desk, rfr_team, shared)
    DEVICE,
    Clock,
    Fleet,
    authorised,
    build,
    clock,
    desk,
    desk_settings,
    events,
    finds,
    rfr_team,
)

RETRY_S = 0.05  # the first retry's delay; it doubles after each failed attempt


@pytest.fixture
def settings(tmp_path, central, pipeline):
    base = desk_settings(tmp_path, central, pipeline)
    return base.model_copy(update={"updates": base.updates.model_copy(update={"repair_retry_s": RETRY_S})})




def flip(path, page: int, offset: int = 200) -> None:
    """Flip one bit of ``page`` (1-based) of the file, as a failing disk sector would."""
    with open(path, "r+b") as fh:
        fh.seek((page - 1) * PAGE_SIZE + offset)
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte ^ 0x04]))




def repair_events(desk: Desk, outcome: str) -> list:
    return [e for e in events(desk, "device_fault") if e.outcome == outcome]


def refused_code(desk: Desk, library_id: str) -> str | None:
    try:
        desk.libraries.current(library_id)
    except LibraryRefusedError as e:
        return e.refusal
    return None


def test_a_damaged_library_is_refused_refetched_and_served_again_and_a_bad_copy_is_refused(desk, rfr_team: Fleet,
                                                                                           central, pipeline):
    kestrel = rfr_team.library("op-kestrel")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), authorised("op-kestrel", default=False)]))
    desk.updater.check_now()
    assert dict(desk.libraries.held()) == {"national": 1, "op-kestrel": 1}
    assert desk.library_integrity.check() == []
    store = desk.settings.library_store_dir / "op-kestrel"
    damaged = next((store / "versions").glob("*.db"))
    # What central serves is itself bad at first: same length, one byte changed (its digest is not central's).
    served = central.repo.target_path(kestrel)
    good = served.read_bytes()
    served.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])

    flip(damaged, damaged.stat().st_size // PAGE_SIZE // 2)  # on the running desk, a page no search reads
    problems = desk.library_integrity.check()

    assert problems and all("op-kestrel" not in p or "HMAC" in p for p in problems)
    # Refused at once, in plain words; the other library keeps serving.
    assert refused_code(desk, "op-kestrel") == "under_repair"
    words = desk.libraries.refusal("op-kestrel")
    assert "is being repaired" in words and "other libraries can still be searched" in words
    assert [c.library_id for c in desk.libraries.choices()] == ["national"]
    assert finds(desk.libraries.current("national"), "national", 3, pipeline.dim)
    started = repair_events(desk, "library_repair_started")
    assert len(started) == 1 and started[0].details["library_id"] == "op-kestrel"
    assert any("HMAC" in p for p in started[0].details["problems"])
    # The bad copy from central is refused, the library stays closed, and the desk tries again, waiting longer.
    retries = wait_until(lambda: len(r := repair_events(desk, "library_repair_retrying")) >= 2 and r,
                       "two refused re-fetches")
    assert {r.details["reason"] for r in retries} == {"altered_download"}
    assert "stays closed" in retries[0].details["message"] and "keeps using" not in retries[0].details["message"]
    assert retries[1].details["retry_in_s"] > retries[0].details["retry_in_s"]
    refusals = [e for e in events(desk, "library_update_refused") if e.details.get("library_id") == "op-kestrel"]
    assert refusals and refusals[0].details["reason"] == "altered_download"
    assert refused_code(desk, "op-kestrel") == "under_repair"
    assert repair_events(desk, "library_repaired") == []

    served.write_bytes(good)  # central serves the sound copy again
    wait_until(lambda: repair_events(desk, "library_repaired"), "the repair")

    assert refused_code(desk, "op-kestrel") is None
    assert finds(desk.libraries.current("op-kestrel"), "op-kestrel", 4, pipeline.dim)
    assert [c.library_id for c in desk.libraries.choices()] == ["national", "op-kestrel"]
    assert dict(desk.libraries.held()) == {"national": 1, "op-kestrel": 1}
    fresh = desk.settings.library_store_dir / "op-kestrel"
    assert library_problems(next((fresh / "versions").glob("*.db")), rfr_team.keys["op-kestrel"]) == []
    assert desk.library_integrity.check() == []
    assert not any(p.name.startswith((".repair-", ".damaged-")) for p in desk.settings.library_store_dir.iterdir())
    repaired = events(desk, "library_update")[-1]
    assert repaired.details["kind"] == "repair" and repaired.details["library_id"] == "op-kestrel"
    assert desk.audit.verify().findings == []
    desk.updater.check_now()  # an ordinary check afterwards finds nothing to do
    assert dict(desk.libraries.held()) == {"national": 1, "op-kestrel": 1}


def test_with_central_unreachable_a_damaged_library_stays_refused_and_the_desk_keeps_retrying(tmp_path, central,
                                                                                             pipeline, clock):
    with socket.socket() as s:  # a port nothing listens on: central is down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    base = desk_settings(tmp_path, central, pipeline)
    settings = base.model_copy(update={"updates": base.updates.model_copy(
        update={"repair_retry_s": RETRY_S, "central_url": f"https://127.0.0.1:{dead}", "timeout_s": 2})})
    seed_authorisation(settings)
    desk = open_desk(settings, pipeline=pipeline, clock=clock)
    try:
        assert refused_code(desk, "national") is None
        installed = desk.library_store.current_path()
        flip(installed, installed.stat().st_size // PAGE_SIZE // 2)
        assert desk.library_integrity.check()
        assert refused_code(desk, "national") == "under_repair"
        retries = wait_until(lambda: len(r := repair_events(desk, "library_repair_retrying")) >= 3 and r,
                           "three failed re-fetches")
        delays = [r.details["retry_in_s"] for r in retries[:3]]
        assert delays == [RETRY_S, 2 * RETRY_S, 4 * RETRY_S]
        for retry in retries:  # the words say the library stays closed, never that the damaged copy is used
            assert "Cannot reach" in retry.details["message"] and "stays closed" in retry.details["message"]
            assert "keeps using" not in retry.details["message"]
        assert refused_code(desk, "national") == "under_repair"  # never served from the damaged file
        assert desk.library_integrity.check() == []  # a library being repaired is not checked (or re-reported)
        assert len(repair_events(desk, "library_repair_started")) == 1
    finally:
        desk.close()


def test_a_damaged_delta_segment_is_replaced_by_a_full_copy_never_patched(desk, rfr_team: Fleet, central, pipeline):
    """The damaged file is a segment (a delta applied on the desk): the re-fetch is central's full version, and
    the desk's store afterwards holds that full copy alone (nothing of the damaged files is built on)."""
    rfr_team.library("op-kestrel")
    rfr_team.manifest(manifest(DEVICE, 1, [authorised("national"), authorised("op-kestrel", default=False)]))
    desk.updater.check_now()  # v1 in full
    key = rfr_team.keys["op-kestrel"]
    v1, v2 = rfr_team.files["op-kestrel"], build(rfr_team.folder / "op-kestrel-2.db", key, "op-kestrel", pipeline,
                                                  version=2, n=14)
    delta = rfr_team.folder / "op-kestrel-1-2.delta"
    a, b = Snapshot.open(v1, key), Snapshot.open(v2, key)
    try:
        make_delta(a, b, delta, key)
    finally:
        a.close()
        b.close()
    names = [central.repo.publish(path, dataclasses.replace(info, library_id="op-kestrel")).path
             for path, info in ((delta, describe_delta(delta, key)), (v2, describe_full(v2, key)))]
    desk.updater.check_now()  # v2 as a delta: a segment on the desk
    assert dict(desk.libraries.held())["op-kestrel"] == 2
    store = LibraryStore(desk.settings.library_store_dir / "op-kestrel")
    [segment] = store.segment_paths()

    flip(segment, max(1, segment.stat().st_size // PAGE_SIZE // 2))
    problems = desk.library_integrity.check()

    assert problems and all(segment.name in p for p in problems)
    assert refused_code(desk, "op-kestrel") == "under_repair"
    wait_until(lambda: repair_events(desk, "library_repaired"), "the repair")
    assert repair_events(desk, "library_repaired")[0].details["library_version"] == 2
    assert store.segment_paths() == [] and store.current_version() == 2  # the full version 2, no segment
    assert events(desk, "library_update")[-1].details["target"] == names[1]  # the full copy, not the delta
    assert finds(desk.libraries.current("op-kestrel"), "op-kestrel", 13, pipeline.dim)  # a record new in v2
    assert desk.library_integrity.check() == []
