"""Download bytes from central for the TUF client: urllib, resume after a cut, hard size cap.

A desk's link can drop in the middle of a large library. Instead of starting
again, the fetcher asks for the rest with an HTTP Range request and carries
on, up to ``max_resumes`` times per download. Nothing here decides whether
the bytes are good: the TUF client checks length and hashes against signed
metadata after the download. The fetcher only makes sure no download can
grow beyond ``max_bytes`` (the client's own cap is the signed length), so a
hostile server cannot fill the disk.
"""

from __future__ import annotations

import http.client
import logging
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 4 * 1024**3
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class _Cut(Exception):
    """The connection ended before the server's declared length: resume from where it stopped."""


class ResumingFetcher(FetcherInterface):
    """A ``tuf.ngclient`` fetcher over urllib that resumes interrupted downloads with Range requests."""

    def __init__(self, *, timeout_s: float = 30.0, max_resumes: int = 5, max_bytes: int = DEFAULT_MAX_BYTES,
                 retry_delay_s: float = 1.0, ssl_context: ssl.SSLContext | None = None,
                 user_agent: str = "custody-rfr-appliance") -> None:
        self.timeout_s = timeout_s
        self.max_resumes = max_resumes
        self.max_bytes = max_bytes
        self.retry_delay_s = retry_delay_s
        self.user_agent = user_agent
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl_context))
        self.resumes = 0  # how many times a download was resumed, for logs and tests

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._stream(url)

    def _open(self, url: str, offset: int) -> http.client.HTTPResponse:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response: http.client.HTTPResponse = self._opener.open(
                urllib.request.Request(url, headers=headers), timeout=self.timeout_s)
        except urllib.error.HTTPError as e:
            e.close()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {e.code}", e.code) from e
        return response

    def _stream(self, url: str) -> Iterator[bytes]:
        """Yield the body of ``url``; raises only ``DownloadError`` (ngclient wraps nothing during iteration)."""
        received = 0
        cuts = 0
        while True:
            try:
                response = self._open(url, received)
            except exceptions.DownloadError:
                raise
            except (OSError, http.client.HTTPException) as e:
                if received == 0:
                    raise exceptions.DownloadError(f"Cannot reach {url}: {e}") from e
                cuts += 1
                if cuts > self.max_resumes:
                    raise exceptions.DownloadError(f"{url}: gave up after {self.max_resumes} resumes: {e}") from e
                time.sleep(self.retry_delay_s)
                continue
            try:
                with response:
                    skip = self._check_resume(url, response, received)
                    while True:
                        chunk = response.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk, skip = chunk[dropped:], skip - dropped
                            if not chunk:
                                continue
                        received += len(chunk)
                        if received > self.max_bytes:
                            raise exceptions.DownloadLengthMismatchError(
                                f"{url}: more than {self.max_bytes} bytes; download stopped.")
                        yield chunk
                    # read(n) returns b"" on a cut instead of raising: ``length`` is what Content-Length still owes.
                    if response.length:
                        raise _Cut(f"connection closed with {response.length} bytes missing")
                    return
            except exceptions.DownloadError:
                raise
            except (_Cut, OSError, http.client.HTTPException) as e:
                cuts += 1
                if cuts > self.max_resumes:
                    raise exceptions.DownloadError(
                        f"{url}: connection cut {cuts} times; gave up after {received} bytes.") from e
                self.resumes += 1
                logger.warning("download of %s cut after %d bytes (%s); resuming", url, received, e)
                time.sleep(self.retry_delay_s)

    @staticmethod
    def _check_resume(url: str, response: http.client.HTTPResponse, offset: int) -> int:
        """How many leading bytes to drop: 0 if the server honoured Range, ``offset`` if it sent everything."""
        if offset == 0:
            return 0
        if response.status == 200:
            return offset  # server ignored Range: skip what we already have
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status != 206 or not match or int(match.group(1)) != offset:
            raise exceptions.DownloadError(
                f"{url}: server answered a resume from byte {offset} with {response.status} "
                f"{response.headers.get('Content-Range')!r}.")
        return 0
