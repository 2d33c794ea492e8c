"""Where a sign-in may send a person afterwards: only a path on the same site.

``next`` comes from the query string, so it is attacker-written. Browsers drop tabs and
newlines inside URLs and treat a backslash as a slash, so ``/\t/evil.example`` or ``/\\evil``
become ``//evil.example``: a link to another site that looks like ours. A newline in a
``Location`` header is also a response-splitting attempt (and made werkzeug raise a 500).
One function decides for both the desk and central.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MAX_NEXT_CHARS = 2000


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a plain same-site path, else None (the caller picks its home page)."""
    if not value or len(value) > MAX_NEXT_CHARS or not value.startswith("/"):
        return None
    for form in (value, unquote(value)):
        if form.startswith("//") or "\\" in form or any(ord(c) < 0x20 or ord(c) == 0x7F for c in form):
            return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
