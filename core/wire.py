"""One strict JSON decoder and encoder for every message that crosses the wire.

Each message type used to parse its payload by hand, and they differed: some
refused NaN and Infinity (which are not JSON and have no canonical form to
hash or sign), some did not. Everything now goes through here, so a payload
is refused the same way, with the same kind of message, whatever it claims to be.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from core.errors import WireFormatError

# Caps on a payload's shape, checked before the JSON parser builds anything. A payload under the
# byte limit can still be hostile in shape: 16 KB of ``[[[[`` makes the standard parser recurse
# until RecursionError, which is not a ValueError and escaped every caller. No message of ours
# nests deeper than a few levels or carries more than a few hundred keys.
MAX_DEPTH = 16
MAX_KEYS = 2000
MAX_STRING_CHARS = 64 * 1024

_STRUCTURAL = re.compile(r'[\[\]{}:"]')
_STRING_END = re.compile(r'["\\]')


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def check_shape(text: str, what: str, *, max_depth: int = MAX_DEPTH, max_keys: int = MAX_KEYS,
                max_string: int = MAX_STRING_CHARS) -> None:
    """Refuse nesting, key counts and string lengths past the caps without building any object.

    A linear scan that skips over string contents, so brackets inside strings do not count.
    Malformed JSON that passes is left to the parser to refuse.
    """
    depth = keys = 0
    pos = 0
    end = len(text)
    while True:
        m = _STRUCTURAL.search(text, pos)
        if m is None:
            return
        char = m.group()
        pos = m.end()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise WireFormatError(f"{what} is nested more than {max_depth} levels deep.")
        elif char in "]}":
            depth -= 1
        elif char == ":":
            keys += 1
            if keys > max_keys:
                raise WireFormatError(f"{what} has more than {max_keys} keys.")
        else:
            start = pos
            while True:
                s = _STRING_END.search(text, pos)
                if s is None:
                    return  # unterminated: the parser says so
                if s.group() == '"':
                    pos = s.end()
                    break
                pos = min(s.end() + 1, end)
            if pos - 1 - start > max_string:
                raise WireFormatError(f"{what} has a text value longer than {max_string} characters.")


def decode_object(payload: bytes, limit: int, what: str, *, version: int | None = None,
                  fields: set[str] | frozenset[str] | None = None, max_keys: int = MAX_KEYS,
                  max_string: int = MAX_STRING_CHARS) -> dict[str, Any]:
    """The payload as a JSON object, after the size cap, strict parsing, version and exact field checks.

    ``max_keys`` and ``max_string`` raise the shape caps for the few documents that are lists by nature
    (a library key wrapped for every desk of the fleet); messages keep the defaults.

    With ``version`` the ``v`` field must equal it and is removed from the result;
    with ``fields`` the object's keys (``v`` included) must be exactly those.
    """
    if not isinstance(payload, bytes | bytearray):
        raise WireFormatError(f"{what} is not bytes.")
    if len(payload) > limit:
        raise WireFormatError(f"{what} is {len(payload)} bytes; the limit is {limit}.")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireFormatError(f"{what} is not valid JSON: {e}") from e
    check_shape(text, what, max_keys=max_keys, max_string=max_string)
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise WireFormatError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise WireFormatError(f"{what} must be a JSON object.")
    if version is not None and obj.get("v") != version:
        raise WireFormatError(f"Unsupported {what.lower()} schema version {obj.get('v')!r}.")
    if fields is not None and set(obj) != set(fields):
        missing, extra = set(fields) - set(obj), set(obj) - set(fields)
        raise WireFormatError(f"{what} fields wrong: missing {sorted(missing)}, unexpected {sorted(extra)}.")
    if version is not None:
        obj.pop("v")
    return obj


def aware_time(value: object, what: str) -> datetime:
    """A moment on the wire: an ISO 8601 string of bounded length that names its time zone (a time without one
    means a different instant on every machine that reads it)."""
    if not isinstance(value, str) or len(value) > 40:
        raise WireFormatError(f"{what} must be an ISO 8601 time.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise WireFormatError(f"{what} is not an ISO 8601 time: {e}") from e
    if moment.tzinfo is None:
        raise WireFormatError(f"{what} must carry a time zone.")
    return moment


def encode_object(obj: dict[str, Any], limit: int, what: str) -> bytes:
    """Compact, key-sorted JSON without NaN, refused when over ``limit``."""
    try:
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise WireFormatError(f"{what} is not plain JSON: {e}") from e
    if len(data) > limit:
        raise WireFormatError(f"{what} is {len(data)} bytes; the limit is {limit}.")
    return data
