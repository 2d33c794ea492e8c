"""Central looks like the desk: the same colour tokens and patterns, its stylesheet served by itself."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]
DESK_CSS = ROOT / "appliance" / "web" / "static" / "app.css"
CENTRAL_CSS = ROOT / "central" / "web" / "static" / "central.css"


def _tokens(css: str) -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", css)
    assert root, "no :root block"
    return dict(re.findall(r"(--[a-z-]+)\s*:\s*([^;]+);", root.group(1)))


def test_central_uses_the_desks_colours_and_type() -> None:
    desk, central = DESK_CSS.read_text(), CENTRAL_CSS.read_text()
    desk_tokens, central_tokens = _tokens(desk), _tokens(central)
    assert desk_tokens and {k: central_tokens.get(k) for k in desk_tokens} == desk_tokens
    assert "font: 1.05rem/1.5 system-ui, sans-serif" in desk and "font: 1.05rem/1.5 system-ui, sans-serif" in central
    assert "max-width: 64rem" in desk and "max-width: 64rem" in central


def test_pages_carry_the_shared_patterns_and_nothing_from_elsewhere(client: FlaskClient) -> None:
    page = client.get("/audit/cases").get_data(as_text=True)
    for pattern in ('class="skip" href="#main"', 'class="site-header"', 'class="product"', 'class="service-name"',
                    'class="width-container service-nav"', 'aria-label="Main"', 'class="phase-banner"',
                    '<main id="main" class="width-container"', 'aria-current="page">Find a case'):
        assert pattern in page, pattern
    assert not re.search(r'(?:href|src)="(?:https?:)?//', page)  # no CDN, no other origin
    with client.get("/static/central.css") as css:  # a served file holds its handle until closed
        assert css.status_code == 200 and css.mimetype == "text/css"
        text = css.get_data(as_text=True)
    assert "url(" not in text and "@import" not in text
    for selector in (".error-summary", "dl.summary-list", "button.secondary", ".tag", ".warning-banner",
                     "ol.timeline", ".phase-banner"):
        assert selector in text, selector
