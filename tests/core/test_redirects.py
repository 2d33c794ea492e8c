"""The one rule for where sign-in may send a person: a path on this site, nothing a browser reads as another."""

import pytest

from core.redirects import safe_next


@pytest.mark.parametrize("value", ["/", "/cases/12", "/cases?page=2&q=a%20b", "/audit/export.csv", "/a/b/%2F"])
def test_same_site_paths_are_kept(value):
    assert safe_next(value) == value


@pytest.mark.parametrize("value", [
    None, "", "cases", "https://evil.example/", "http:/evil.example", "//evil.example", "///evil.example",
    "/\\evil.example", "/%5Cevil.example", "/\t/evil.example", "/%09/evil.example", "/\n/evil.example",
    "/%0a/evil.example", "/%0d%0aSet-Cookie:x=1", "/%2F/evil.example", "/%2f%2fevil.example",
    "/\x7f", "/" + "a" * 2001, "javascript:alert(1)",
])
def test_other_sites_control_characters_and_encoded_forms_are_refused(value):
    assert safe_next(value) is None
