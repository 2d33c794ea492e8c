"""Central's peer review page in Chromium, served as in production (``python -m central serve``, HTTPS): the
face searched, sealed by a desk and opened by central's ingest from a real Mosquitto, beside the reference image
from central's library; the zoom by keyboard; axe-core at 1366x768 and 800 px; the outcome destroys the face."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from central.peer_review.review_key import make_review_key
from central.peer_review.store import PeerReviewStore
from central.web import close_stores
from central.web import create_app as create_central
from core.peer_review import CandidateSummary, PeerReviewRequest
from core.review_probe import SealedProbe
from core.topics import peer_review_request_topic
from supply.pinned import member
from testbed.chain_writer import ChainWriter
from testbed.ports import free_port
from tests.audit_support import wait_for
from tests.central_signin import PASSWORD, add_account
from tests.fleet_key import write_command_key
from tests.fleet_tls import CENTRAL_SECRET, start_served, stop_served, wait_https
from tests.ui.conftest import axe_violations

VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "narrow": {"width": 800, "height": 900}}


@pytest.fixture(scope="module")
def central_served(tmp_path_factory, fleet, mosquitto, demo_library) -> Iterator[dict]:
    """Central over HTTPS with its review key, a probe folder and the demo library as its copy of the library."""
    pki, _desk = fleet
    root = tmp_path_factory.mktemp("ui-central")
    port = free_port()
    command_key, _public = write_command_key(root / "central-key")
    review_key = make_review_key(root / "review.key")
    config = root / "central.toml"
    config.write_text(
        f'data_dir = "{root / "data"}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "central-ui-{uuid.uuid4().hex[:6]}"\n'
        f'[web]\nport = {port}\nsecret_key = "{CENTRAL_SECRET}"\nworkers = 1\nthreads = 4\n'
        + pki.central_web_toml() + f'[fleet]\ncommand_key = "{command_key}"\n'
        f'[peer_review]\nreview_key = "{root / "review.key"}"\n'
        f'[[peer_review.libraries]]\npath = "{demo_library[0]}"\nkey_file = "{demo_library[1]}"\n')
    db = root / "data" / "central.db"
    # The reviewer's account and the desk's registration, in central's database before it starts.
    setup = create_central(test_config={"TESTING": True, "SECRET_KEY": CENTRAL_SECRET, "DATABASE": str(db)})
    add_account(setup, "dr.patel", ["peer_reviewer"])
    desk = ChainWriter(f"desk-ui-{uuid.uuid4().hex[:8]}")
    setup.extensions["central.registry"].register_device(desk.device_id, desk.public_hex)
    close_stores(setup)
    log = root / "central.log"
    proc = start_served("central", config, log)
    base = f"https://127.0.0.1:{port}"
    try:
        wait_https(base + "/healthz", pki.trust(), proc, log)
        yield {"base": base, "db": db, "probe_dir": root / "data" / "review-probes", "desk": desk,
               "review_key": review_key}
    finally:
        assert stop_served(proc) == 0, log.read_text()[-3000:]


def send_request(central: dict, publisher, thumbnail: bytes) -> PeerReviewRequest:
    """What a desk sends: references and the face thumbnail sealed to central's review key, over the broker."""
    desk: ChainWriter = central["desk"]
    request_id, case_id = str(uuid.uuid4()), f"C{uuid.uuid4().hex[:7].upper()}"
    probe = SealedProbe.seal(thumbnail, central["review_key"].public_key(), device_id=desk.device_id,
                             request_id=request_id, case_id=case_id, taken_on="2026-12-04", quality="pass")
    req = PeerReviewRequest(
        device_id=desk.device_id, case_id=case_id, custody_ref="CR-2026-000418", requested_by="pc.jones",
        doubts="The ear lobes look different.", ranks=(1,), request_id=request_id, probe=probe,
        library_version="1",
        candidates=(CandidateSummary(1, "DEMO-OBAMA", 0.61, "strong", "needs_peer_review", "obama.jpg"),
                    CandidateSummary(2, "DEMO-BIDEN", 0.30, "weak", "not_viable", "biden.jpg")))
    publisher(peer_review_request_topic(desk.device_id), req.to_bytes())
    reviews = PeerReviewStore(central["db"])
    try:
        assert wait_for(lambda: (r := reviews.get(request_id)) is not None and r.probe_state == "held", timeout=20)
    finally:
        reviews.close()
    return req


def reviewer_page(browser, base: str, viewport: dict) -> Page:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=viewport)
    context.route("**/vendor/axe.min.js", lambda route: route.fulfill(
        body=member("axe-core", "package/axe.min.js").read_bytes(), content_type="text/javascript"))
    page = context.new_page()
    page.goto(base + "/login")
    page.get_by_label("Username").fill("dr.patel")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/peer-review$"))
    return page


def shown_width(page: Page, selector: str) -> float:
    return page.locator(selector).first.evaluate("img => img.getBoundingClientRect().width")


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_the_reviewer_compares_the_face_searched_with_the_reference_and_the_outcome_destroys_it(
        size, browser, central_served, publisher, pipeline, face_photo) -> None:
    thumbnail = pipeline.process(face_photo("obama3.jpg").read_bytes()).thumbnail
    req = send_request(central_served, publisher, thumbnail)
    page = reviewer_page(browser, central_served["base"], VIEWPORTS[size])
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        assert axe_violations(page) == []  # the queue
        page.get_by_role("link", name=f"Review case {req.case_id}").click()
        expect(page.get_by_role("heading", name=f"Peer review of case {req.case_id}")).to_be_visible()
        probe = page.get_by_role("img", name=re.compile("The face searched at the desk"))
        reference = page.get_by_role("img", name="Reference image of DEMO-OBAMA (candidate 1)")
        for image in (probe, reference):
            expect(image).to_be_visible()
            # Visible comes before loaded: wait for the image to finish loading, then require real pixels
            # (a broken image is complete too, with naturalWidth 0).
            image.element_handle().wait_for_element_state("stable")
            page.wait_for_function("img => img.complete", arg=image.element_handle(), timeout=10_000)
            assert image.evaluate("img => img.naturalWidth") > 0
            assert image.evaluate("img => img.getBoundingClientRect().width") >= 300
        # Side by side at 1366 px; at 800 px both still show whole, one above the other if need be.
        box_probe, box_ref = probe.bounding_box(), reference.bounding_box()
        if size == "desktop":
            assert abs(box_probe["y"] - box_ref["y"]) < 2 and box_ref["x"] > box_probe["x"] + 300
        assert box_ref["x"] + box_ref["width"] <= VIEWPORTS[size]["width"]
        pair = page.locator(".pair").first
        expect(pair).to_contain_text("Date taken")
        expect(pair).to_contain_text("2026-12-04")
        expect(pair).to_contain_text("Image quality")
        expect(pair).to_contain_text("Time between this image and the probe")
        assert axe_violations(page) == []
        # Zoom by keyboard alone: on the size choice (radio buttons, in the Tab order), the arrow keys change it.
        page.locator("#zoom-1").focus()
        page.keyboard.press("ArrowRight")
        expect(page.locator("#zoom-2")).to_be_checked()
        assert shown_width(page, "img.face") == 480
        page.keyboard.press("ArrowRight")
        assert shown_width(page, "img.face") == 640
        assert axe_violations(page) == []
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert shown_width(page, "img.face") == 320
        # The images are fetched uncached.
        response = page.request.get(f"{central_served['base']}/peer-review/{req.request_id}/probe.jpg")
        assert response.ok and response.body() == thumbnail
        assert response.headers["cache-control"].startswith("no-store")
        # An empty outcome: the errors are shown, and the page stays accessible.
        page.get_by_role("button", name="Record the outcome and send it to the desk").click()
        expect(page.get_by_text("Decide candidate 1: viable or not viable.")).to_be_visible()
        assert axe_violations(page) == []
        page.get_by_label("Not viable").check()
        page.get_by_label("Reasons for the outcome").fill("Ear lobes attached in the probe, free in the reference.")
        page.get_by_role("button", name="Record the outcome and send it to the desk").click()
        page.wait_for_url(re.compile(r"/peer-review$"))
        expect(page.get_by_role("status")).to_contain_text("The probe image held for this review was destroyed.")
        assert not (central_served["probe_dir"] / f"{req.request_id}.key").exists()
        assert not (central_served["probe_dir"] / f"{req.request_id}.probe").exists()
        gone = page.request.get(f"{central_served['base']}/peer-review/{req.request_id}/probe.jpg")
        assert gone.status == 404
        # The answered review says the face is gone, and shows no image.
        page.goto(f"{central_served['base']}/peer-review/{req.request_id}")
        expect(page.locator("#images-gone")).to_contain_text("The face searched was destroyed at")
        expect(page.get_by_role("img")).to_have_count(0)
        assert axe_violations(page) == []
        assert csp == []
    finally:
        page.context.close()
