"""Pure update decisions: which offer fits, and the words used when one does not."""

from __future__ import annotations

import pytest
from tuf.api import exceptions as tuf_errors

from appliance.updates.trust import (
    DeltaBaseRefusedError,
    EmbedderRefusedError,
    InstalledLibrary,
    Offer,
    ResultMismatchRefusedError,
    RollbackRefusedError,
    UpdateUnavailableError,
    VerificationRefusedError,
    check_claims,
    choose_update,
    explain_tuf_error,
)
from core.library_announce import LibraryTargetInfo

D = {v: f"{v:064x}" for v in range(1, 10)}
KEY, REKEYED = "a" * 32, "b" * 32
INSTALLED = InstalledLibrary(version=2, digest=D[2], embedder_id="emb@1", key_id=KEY)


def full(version: int, embedder: str = "emb@1", key_id: str = KEY) -> Offer:
    info = LibraryTargetInfo("full", version, embedder, D[version], key_id)
    return Offer(info.name, 1000, info)


def delta(base: int, result: int, base_digest: str | None = None, key_id: str = KEY) -> Offer:
    info = LibraryTargetInfo("delta", result, "emb@1", D[result], key_id, base, base_digest or D[base])
    return Offer(info.name, 100, info)


def test_nothing_newer_means_up_to_date():
    assert choose_update(INSTALLED, []) is None
    assert choose_update(INSTALLED, [full(1), full(2), delta(1, 2)]) is None


def test_newest_wins_and_a_fitting_delta_beats_a_full_of_the_same_version():
    assert choose_update(INSTALLED, [full(1), full(3), delta(2, 3)]) == delta(2, 3)
    assert choose_update(INSTALLED, [full(3), full(4), delta(2, 3)]) == full(4)
    assert choose_update(INSTALLED, [delta(2, 3), delta(3, 4)]) == delta(2, 3)


def test_a_desk_that_wants_a_new_base_takes_the_full_version_of_the_same_version():
    assert choose_update(INSTALLED, [full(1), full(3), delta(2, 3)], prefer_full=True) == full(3)
    assert choose_update(INSTALLED, [delta(2, 3), delta(3, 4)], prefer_full=True) == delta(2, 3)  # no full: delta
    assert choose_update(INSTALLED, [full(3), delta(2, 3), delta(3, 4)], prefer_full=True) == full(3)


def test_a_delta_that_does_not_fit_falls_back_to_a_full_library():
    assert choose_update(INSTALLED, [delta(1, 3), full(3)]) == full(3)
    assert choose_update(INSTALLED, [delta(2, 3, base_digest=D[7]), full(3)]) == full(3)


def test_a_delta_under_another_content_key_never_fits_so_a_rekey_moves_by_a_full_library():
    assert choose_update(INSTALLED, [delta(2, 3, key_id=REKEYED), full(3, key_id=REKEYED)]) == full(3, key_id=REKEYED)
    with pytest.raises(DeltaBaseRefusedError):
        choose_update(INSTALLED, [delta(2, 3, key_id=REKEYED)])


def test_only_unfitting_deltas_are_refused_with_both_versions_named():
    with pytest.raises(DeltaBaseRefusedError, match=r"changes library version 1 .* this desk has version 2"):
        choose_update(INSTALLED, [delta(1, 3)])
    with pytest.raises(DeltaBaseRefusedError, match="publish a full library version 3"):
        choose_update(INSTALLED, [delta(2, 3, base_digest=D[7])])


def test_an_older_newest_version_is_a_rollback():
    with pytest.raises(RollbackRefusedError) as err:
        choose_update(INSTALLED, [full(1)])
    assert "older than the installed version 2" in str(err.value) and err.value.reason == "rollback"


def test_another_face_model_is_refused():
    with pytest.raises(EmbedderRefusedError, match="built for face model emb@2, but this desk uses emb@1"):
        choose_update(INSTALLED, [full(3, "emb@2")])
    assert choose_update(INSTALLED, [full(3, "emb@2"), full(3)]) == full(3)


def test_claims_must_match_the_signed_description():
    check_claims(full(3), 3, D[3], "emb@1", previous=2)
    with pytest.raises(ResultMismatchRefusedError, match="holds version 4"):
        check_claims(full(3), 4, D[3], "emb@1", previous=2)


@pytest.mark.parametrize("error, cls, reason", [
    (tuf_errors.ExpiredMetadataError("timestamp.json is expired"), VerificationRefusedError, "expired_metadata"),
    (tuf_errors.BadVersionNumberError("new 2 < old 3"), VerificationRefusedError, "metadata_rollback"),
    (tuf_errors.EqualVersionNumberError("same"), VerificationRefusedError, "metadata_rollback"),
    (tuf_errors.UnsignedMetadataError("targets"), VerificationRefusedError, "bad_signature"),
    (tuf_errors.LengthOrHashMismatchError("hash"), VerificationRefusedError, "altered_download"),
    (tuf_errors.DownloadLengthMismatchError("long"), VerificationRefusedError, "oversized_download"),
    (tuf_errors.RepositoryError("odd"), VerificationRefusedError, "bad_metadata"),
    (tuf_errors.DownloadError("refused"), UpdateUnavailableError, "unavailable"),
])
def test_tuf_errors_are_explained_for_the_desk(error, cls, reason):
    explained = explain_tuf_error(error, installed_version=5)
    assert type(explained) is cls and explained.reason == reason
    assert str(error) in str(explained) and "keeps using library version 5" in str(explained)
