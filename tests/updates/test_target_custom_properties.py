"""Properties of a TUF target's custom metadata as the desk reads it (Hypothesis).

The desk sorts each verified target by ``is_config(custom)`` and parses it with ``ConfigTargetInfo.from_dict``
or ``LibraryTargetInfo.from_dict`` (appliance.updates.config and .updater), then checks the name it implies.
Whatever JSON the signed metadata carries, that is a valid description or a ``WireFormatError`` (which the
updater logs and skips), never another exception.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.desk_config import ConfigTargetInfo, is_config
from core.errors import WireFormatError
from core.library_announce import LibraryTargetInfo

json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                           | st.text(max_size=12), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
digests = st.from_regex(r"\Asha256:[0-9a-f]{64}\Z")
key_ids = st.from_regex(r"\A[0-9a-f]{32}\Z")
fulls = st.builds(LibraryTargetInfo, kind=st.just("full"), library_version=st.integers(1, 10**6),
                  embedder_id=st.text(min_size=1, max_size=30), result_digest=digests, key_id=key_ids)


@st.composite
def deltas(draw: st.DrawFn) -> LibraryTargetInfo:
    base = draw(st.integers(1, 10**6 - 1))
    return LibraryTargetInfo("delta", draw(st.integers(base + 1, 10**6)), draw(st.text(min_size=1, max_size=30)),
                             draw(digests), draw(key_ids), base, draw(digests))


configs = st.builds(ConfigTargetInfo, config_version=st.integers(1, 10**6), digest=digests)
infos = st.one_of(fulls, deltas(), configs)


def _read(custom: object) -> LibraryTargetInfo | ConfigTargetInfo | None:
    """What the desk does with one target's custom metadata: the description, or None when it is refused."""
    try:
        info = (ConfigTargetInfo if is_config(custom) else LibraryTargetInfo).from_dict(custom)
        assert isinstance(info.name, str) and "/" not in info.name
        return info
    except WireFormatError:
        return None


@settings(max_examples=100)
@given(infos)
def test_valid_descriptions_round_trip_with_their_names(info: LibraryTargetInfo | ConfigTargetInfo) -> None:
    assert _read(info.to_dict()) == info


@settings(max_examples=300)
@given(json_values)
def test_any_json_value_is_read_or_refused(custom: object) -> None:
    _read(custom)


@settings(max_examples=400)
@given(infos, st.data())
def test_any_field_replaced_by_any_value_is_read_or_refused(info: LibraryTargetInfo | ConfigTargetInfo,
                                                            data: st.DataObject) -> None:
    custom = info.to_dict()
    names = [*sorted(custom), "base_version", "base_digest", "extra"]
    for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        custom[name] = data.draw(json_values | st.sampled_from(["full", "delta", "config", 0, -1, True, [], {}]))
    parsed = _read(custom)
    if parsed is not None:
        assert _read(parsed.to_dict()) == parsed


@settings(max_examples=200)
@given(infos, st.sets(st.sampled_from(["kind", "library_version", "embedder_id", "result_digest", "base_version",
                                       "base_digest", "config_version", "digest"]), min_size=1))
def test_missing_fields_are_refused(info: LibraryTargetInfo | ConfigTargetInfo, dropped: set) -> None:
    custom = info.to_dict()
    removed = {k for k in dropped if k in custom}
    for name in removed:
        del custom[name]
    if removed:
        assert _read(custom) is None
