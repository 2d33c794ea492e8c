"""One strict JSON decoder and encoder for every message that crosses the wire.

Each message type used to parse its payload by hand, and they differed: some
refused NaN and Infinity (which are not JSON and have no canonical form to
hash or sign), some did not. Everything now goes through here, so a payload
is refused the same way, with the same kind of message, whatever it claims to be.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import WireFormatError


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def decode_object(payload: bytes, limit: int, what: str, *, version: int | None = None,
                  fields: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """The payload as a JSON object, after the size cap, strict parsing, version and exact field checks.

    With ``version`` the ``v`` field must equal it and is removed from the result;
    with ``fields`` the object's keys (``v`` included) must be exactly those.
    """
    if not isinstance(payload, bytes | bytearray):
        raise WireFormatError(f"{what} is not bytes.")
    if len(payload) > limit:
        raise WireFormatError(f"{what} is {len(payload)} bytes; the limit is {limit}.")
    try:
        obj = json.loads(payload, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as e:
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


def encode_object(obj: dict[str, Any], limit: int, what: str) -> bytes:
    """Compact, key-sorted JSON without NaN, refused when over ``limit``."""
    try:
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise WireFormatError(f"{what} is not plain JSON: {e}") from e
    if len(data) > limit:
        raise WireFormatError(f"{what} is {len(data)} bytes; the limit is {limit}.")
    return data
