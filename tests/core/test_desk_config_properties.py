"""Properties of the signed desk configuration's parser (Hypothesis): any bytes or any change to a valid document
parse to a valid configuration or raise WireFormatError; valid configurations round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core import passwords
from core.desk_config import ROLES, ConfigAccount, DeskConfig, Retention, Thresholds
from core.errors import WireFormatError

HASH = f"scrypt${2**14}${passwords.SCRYPT_R}${passwords.SCRYPT_P}${'5a' * 16}${'c3' * 32}"
accounts = st.builds(ConfigAccount, username=st.from_regex(r"\A[A-Za-z0-9._-]{1,20}\Z"),
                     role=st.sampled_from(sorted(ROLES)), password_hash=st.just(HASH), disabled=st.booleans())


@st.composite
def configs(draw: st.DrawFn) -> DeskConfig:
    admin = ConfigAccount(username="admin", role="device_admin", password_hash=HASH)
    others = draw(st.lists(accounts, max_size=4, unique_by=lambda a: a.username).map(
        lambda xs: [a for a in xs if a.username != "admin"]))
    return DeskConfig(version=draw(st.integers(1, 2**40)),
                      issued_at=draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                                                  timezones=st.just(UTC))),
                      accounts=[admin, *others], thresholds=Thresholds(top_k=draw(st.integers(1, 50))),
                      retention=Retention(viable_match_days=draw(st.integers(1, 3650))))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                           | st.text(max_size=12) | st.just(HASH.replace("$1$", "$5$")),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _parse(data: bytes) -> DeskConfig | None:
    try:
        return DeskConfig.parse(data)
    except WireFormatError:
        return None


@settings(max_examples=60)
@given(configs())
def test_valid_configurations_round_trip(config: DeskConfig) -> None:
    assert DeskConfig.parse(config.to_bytes()) == config


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_wire_format_error(data: bytes) -> None:
    _parse(data)


@settings(max_examples=200)
@given(configs(), st.data())
def test_any_value_anywhere_is_parsed_or_refused(config: DeskConfig, data: st.DataObject) -> None:
    document = json.loads(config.to_bytes())
    target = data.draw(st.sampled_from(["top", "account", "thresholds", "retention"]))
    holder = {"top": document, "account": document["accounts"][0], "thresholds": document["thresholds"],
              "retention": document["retention"]}[target]
    name = data.draw(st.sampled_from([*sorted(holder), "extra"]))
    holder[name] = data.draw(json_values)
    parsed = _parse(json.dumps(document).encode())
    if parsed is not None:
        assert DeskConfig.parse(parsed.to_bytes()) == parsed
        assert any(a.role == "device_admin" and not a.disabled for a in parsed.accounts)


@settings(max_examples=100)
@given(configs(), st.integers(0, 10**6), st.binary(min_size=1, max_size=4))
def test_byte_changes_are_parsed_or_refused(config: DeskConfig, where: int, insert: bytes) -> None:
    data = bytearray(config.to_bytes())
    where %= len(data)
    data[where:where + len(insert)] = insert
    _parse(bytes(data))
