"""Print a report's HTML to PDF with WeasyPrint, fetching nothing from anywhere, tagged for PDF/UA.

Charts are embedded as ``data:`` URIs and the stylesheet is passed in as a
string, so the URL fetcher allows the ``data`` scheme only: a report can never
make the server reach the network or read a local file while printing (a
refused resource is left out of the PDF, and WeasyPrint logs it).

The public report must be readable with a screen reader, so the PDF is made as PDF/UA-1
(WeasyPrint's ``pdf_variant``): a structure tree of headings, tables and figures (with the
charts' alt text), marked content, the document's language and title, and the PDF/UA
identification in its XMP metadata. ``tests/central/test_report_pdf.py`` checks those marks.
"""

from __future__ import annotations

import weasyprint
from weasyprint.urls import URLFetcher

PRINT_CSS = """
@page {
  size: A4; margin: 18mm 16mm;
  @bottom-right { content: "Page " counter(page) " of " counter(pages); font-size: 8pt; }
}
body { font-family: "DejaVu Sans", "Liberation Sans", sans-serif; font-size: 10pt; line-height: 1.35; color: #111; }
h1 { font-size: 18pt; margin: 0 0 4mm; }
h2 { font-size: 13pt; margin: 6mm 0 2mm; break-after: avoid; }
h3 { font-size: 11pt; margin: 4mm 0 1mm; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin-bottom: 3mm; break-inside: avoid; }
th, td { border-bottom: 0.5pt solid #999; padding: 1mm 2mm; text-align: left; }
td.count, th.count { text-align: right; }
img { max-width: 100%; }
figure { margin: 2mm 0; break-inside: avoid; }
.note { font-size: 9pt; color: #333; }
"""


PDF_VARIANT = "pdf/ua-1"


def render_pdf(html: str) -> bytes:
    """The tagged (PDF/UA-1) PDF of a self-contained HTML document (A4, page numbers)."""
    document = weasyprint.HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=("data",)))
    pdf: bytes = document.write_pdf(stylesheets=[weasyprint.CSS(string=PRINT_CSS)], pdf_variant=PDF_VARIANT)
    return pdf
