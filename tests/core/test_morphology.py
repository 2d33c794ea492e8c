"""The feature-by-feature comparison: one vocabulary, strict on the wire, additive in the peer review request."""

from __future__ import annotations

import json

import pytest

from core.errors import WireFormatError
from core.morphology import COMPONENTS, MAX_NOTE, ComponentFinding, Morphology
from core.peer_review import (
    MAX_COMPARED,
    MAX_REQUEST_BYTES,
    CandidateMorphology,
    CandidateSummary,
    PeerReviewRequest,
)


def comparison(**over: tuple[str, str]) -> Morphology:
    findings = {k: ComponentFinding("similar") for k in COMPONENTS}
    findings.update({k: ComponentFinding(*v) for k, v in over.items()})
    return Morphology(findings)


def request(**over) -> PeerReviewRequest:  # type: ignore[no-untyped-def]
    candidates = tuple(CandidateSummary(r, f"SUBJ-{r}", 0.5, "moderate", "needs_peer_review") for r in (1, 2))
    fields = {"device_id": "desk-test-01", "case_id": "ABCD1234", "custody_ref": "CR-1", "requested_by": "officer",
              "doubts": "", "ranks": (1,), "candidates": candidates}
    return PeerReviewRequest(**{**fields, **over})


def test_the_components_follow_the_brief_in_examination_order():
    assert list(COMPONENTS) == ["head_outline", "hairline", "forehead", "eyebrows", "eyes", "nose", "ears",
                                "cheeks", "mouth", "chin", "neck", "facial_marks"]


def test_a_comparison_round_trips_and_counts_its_findings():
    m = comparison(ears=("not_visible", ""), nose=("dissimilar", "Broader bridge in the probe."))
    again = Morphology.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    assert m.counts() == {"similar": 10, "dissimilar": 1, "not_visible": 1, "not_assessed": 0}


@pytest.mark.parametrize("bad", [
    {"eyes": {"finding": "identical", "note": ""}},
    {"eyes": {"finding": "similar", "note": "x" * (MAX_NOTE + 1)}},
    {"eyes": {"finding": "similar"}},
    {"eyes": {"finding": "similar", "note": "", "score": 1}},
    {"eyes": {"finding": 1, "note": ""}},
])
def test_anything_outside_the_vocabulary_is_refused(bad):
    data = comparison().to_dict() | bad
    with pytest.raises(WireFormatError):
        Morphology.from_dict(data)


def test_a_component_missing_or_added_is_refused():
    data = comparison().to_dict()
    del data["neck"]
    with pytest.raises(WireFormatError, match="exactly the components"):
        Morphology.from_dict(data)
    with pytest.raises(WireFormatError, match="exactly the components"):
        Morphology.from_dict(comparison().to_dict() | {"tail": {"finding": "similar", "note": ""}})


def test_a_request_without_comparisons_reads_and_writes_as_before():
    plain = request()
    assert "morphology" not in plain.to_dict()
    assert PeerReviewRequest.from_bytes(plain.to_bytes()) == plain


def test_a_request_carries_the_comparisons_and_reads_them_back():
    sent = request(morphology=(CandidateMorphology(1, comparison(nose=("dissimilar", "Broader bridge."))),))
    got = PeerReviewRequest.from_bytes(sent.to_bytes())
    assert got == sent and got.morphology[0].findings.findings["nose"].note == "Broader bridge."


def test_comparisons_are_checked_like_the_rest_of_the_request():
    with pytest.raises(WireFormatError, match="candidate the request does not list"):
        request(morphology=(CandidateMorphology(3, comparison()),))
    with pytest.raises(WireFormatError, match="one per candidate"):
        request(morphology=(CandidateMorphology(1, comparison()), CandidateMorphology(1, comparison())))
    candidates = tuple(CandidateSummary(r, f"S{r}", 0.5, "moderate", "not_viable") for r in range(1, 23))
    with pytest.raises(WireFormatError, match=f"at most {MAX_COMPARED}"):
        request(candidates=candidates, morphology=tuple(CandidateMorphology(r, comparison()) for r in range(1, 22)))


@pytest.mark.parametrize("morphology", [[], {}, "similar", [{"rank": 1}],
                                        [{"rank": 1, "findings": {"eyes": {"finding": "similar", "note": ""}}}]])
def test_a_malformed_morphology_field_is_refused_on_decoding(morphology):
    data = request().to_dict() | {"morphology": morphology}
    with pytest.raises(WireFormatError):
        PeerReviewRequest.from_bytes(json.dumps(data).encode())


def test_an_unknown_field_is_still_refused():
    data = request().to_dict() | {"probe_jpeg": "..."}
    with pytest.raises(WireFormatError, match="unexpected \\['probe_jpeg'\\]"):
        PeerReviewRequest.from_bytes(json.dumps(data).encode())


def test_full_notes_on_every_candidate_hit_the_size_cap_and_the_wire_decoder_refuses_it():
    """The desk cuts notes to fit (appliance.services.peer_review); a sender that did not is refused by size."""
    candidates = tuple(CandidateSummary(r, f"S{r}", 0.5, "moderate", "not_viable") for r in range(1, 21))
    long = comparison(**{k: ("dissimilar", "n" * MAX_NOTE) for k in COMPONENTS})
    big = request(candidates=candidates, morphology=tuple(CandidateMorphology(r, long) for r in range(1, 21)))
    with pytest.raises(WireFormatError, match=f"limit is {MAX_REQUEST_BYTES}"):
        big.to_bytes()
    data = json.dumps(big.to_dict()).encode()
    with pytest.raises(WireFormatError, match="bytes; the limit"):
        PeerReviewRequest.from_bytes(data)


def test_notes_can_be_cut_to_fit_a_message_and_say_so():
    m = comparison(nose=("dissimilar", "n" * 300), ears=("similar", "short"))
    cut = m.with_notes_cut(120)
    assert cut.findings["nose"].note == "n" * 119 + "…" and cut.findings["ears"].note == "short"
    assert cut.findings["nose"].finding == "dissimilar", "findings are never changed, only notes shortened"
    assert {c.note for c in m.with_notes_cut(0).findings.values()} <= {"", "…"}
