"""The resuming fetcher against real HTTP servers: resume, servers that ignore Range, caps, give-up."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tuf.api import exceptions
from werkzeug.wrappers import Request, Response

from appliance.updates.fetcher import ResumingFetcher
from tests.updates.conftest import CuttingProxy, serve

DATA = os.urandom(300_000)


@Request.application
def app(request: Request) -> Response:
    if request.path == "/ranges":
        return Response(DATA, mimetype="application/octet-stream").make_conditional(request, accept_ranges=True)
    if request.path == "/no-ranges":
        return Response(DATA, mimetype="application/octet-stream")
    return Response("not here", status=404)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    srv, thread = serve(app)
    yield srv.port
    srv.shutdown()
    thread.join()
    srv.server_close()


def fetch(fetcher: ResumingFetcher, url: str, max_length: int = 10**7) -> bytes:
    return fetcher.download_bytes(url, max_length)


def test_plain_download(server):
    assert fetch(ResumingFetcher(), f"http://127.0.0.1:{server}/ranges") == DATA


@pytest.mark.parametrize("path", ["/ranges", "/no-ranges"])
def test_resumes_after_cuts_with_or_without_range_support(server, path):
    proxy = CuttingProxy(server, cut_after=100_000, match=path.encode(), cuts=2)
    fetcher = ResumingFetcher(retry_delay_s=0)
    try:
        assert fetch(fetcher, f"http://127.0.0.1:{proxy.port}{path}") == DATA
    finally:
        proxy.close()
    assert fetcher.resumes == 2
    assert [b"Range: bytes=" in r for r in proxy.requests] == [False, True, True]


def test_gives_up_after_max_resumes(server):
    proxy = CuttingProxy(server, cut_after=50_000, match=b"/ranges", cuts=100)
    try:
        with pytest.raises(exceptions.DownloadError, match="connection cut 3 times"):
            fetch(ResumingFetcher(retry_delay_s=0, max_resumes=2), f"http://127.0.0.1:{proxy.port}/ranges")
    finally:
        proxy.close()


def test_hard_cap_stops_a_download_whatever_the_caller_allows(server):
    with pytest.raises(exceptions.DownloadLengthMismatchError, match="more than 100000 bytes"):
        fetch(ResumingFetcher(max_bytes=100_000), f"http://127.0.0.1:{server}/ranges")


def test_http_errors_carry_their_status(server):
    with pytest.raises(exceptions.DownloadHTTPError) as err:
        fetch(ResumingFetcher(), f"http://127.0.0.1:{server}/missing")
    assert err.value.status_code == 404


def test_unreachable_server_is_a_download_error():
    with pytest.raises(exceptions.DownloadError, match="Cannot reach"):
        fetch(ResumingFetcher(), "http://127.0.0.1:9/x")
