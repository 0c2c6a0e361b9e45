"""An invoice receipt as a PDF document, drawn from the same ``InvoiceReceipt`` as its web page.

Text is set in fonts shipped in Python packages and embedded in the PDF (fpdf2 embeds only the
glyphs used), so names in any of these scripts print as written: Noto Sans (Latin, Greek,
Cyrillic, Vietnamese, currency signs), Noto Sans Symbols and Noto Emoji (emoji in black and
white) from ``manimgx-fonts``, and WenQuanYi Micro Hei (Chinese, Japanese, Korean) from
``paperang-p2-fonts-cjk``. A fallback font is loaded only for a receipt whose text needs it
(the CJK font takes a noticeable moment to read). Not covered yet: scripts none of these fonts
has (Arabic, Hebrew, Indic scripts, which also need a shaping engine) are left out of the PDF,
and fpdf2 logs the missing characters as a warning.

The fonts come in one weight: bold is drawn by stroking the letters' outlines as well as filling
them, which thickens every script alike.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import TextMode

from tollgate.billing.selectors import InvoiceReceipt
from tollgate.core.money import Money

FAMILY = "NotoSans"
_NOTO = files("manimgx_fonts")
MAIN_FONT = Path(str(_NOTO / "NotoSans[wght].ttf"))
# Tried in this order for a character the main font lacks: (family, file, font in a collection).
FALLBACK_FONTS = (
    ("NotoSansSymbols", Path(str(_NOTO / "NotoSansSymbols[wght].ttf")), 0),
    ("NotoEmoji", Path(str(_NOTO / "NotoEmoji[wght].ttf")), 0),
    ("WenQuanYiMicroHei", Path(str(files("paperang_p2_fonts_cjk") / "fonts/wqy-microhei.ttc")), 0),
)
# fontTools reports each table it subsets at INFO: a dozen lines for every receipt.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)
# Outline stroke of bold text, as a share of the font size (0.03 em reads as bold).
BOLD_STROKE = 0.03
_PT_IN_MM = 25.4 / 72


@functools.cache
def _covered(path: Path, number: int) -> frozenset[int]:
    """The characters a font file has glyphs for (read once per process)."""
    with TTFont(path, lazy=True, fontNumber=number) as font:
        return frozenset(font.getBestCmap())


def _fonts_add(pdf: FPDF, texts: Iterable[str]) -> None:
    """The main font, and the fallback fonts some character of ``texts`` needs."""
    pdf.add_font(FAMILY, fname=MAIN_FONT)
    missing = {ord(char) for text in texts for char in text} - _covered(MAIN_FONT, 0)
    fallbacks = []
    for family, path, number in FALLBACK_FONTS:
        if missing & _covered(path, number):
            pdf.add_font(family, fname=path, collection_font_number=number)
            fallbacks.append(family)
            missing -= _covered(path, number)
    pdf.set_fallback_fonts(fallbacks, exact_match=False)


def _font(pdf: FPDF, size: float, *, bold: bool = False) -> None:
    pdf.set_font(FAMILY, size=size)
    pdf.text_mode = TextMode.FILL_STROKE if bold else TextMode.FILL
    pdf.set_line_width(size * BOLD_STROKE * _PT_IN_MM if bold else 0.2)


def invoice_pdf_render(*, receipt: InvoiceReceipt, brand_name: str, support_email: str) -> bytes:
    """The receipt of ``receipt.invoice`` as PDF bytes: header, billed-to, lines, totals, payments
    and refunds."""
    invoice = receipt.invoice
    customer = invoice.customer

    def money(amount: int) -> str:
        return Money(amount, invoice.currency).format()

    title = f"Invoice {invoice.number}"
    facts = [
        ("Status", invoice.get_status_display()),
        ("Issued", f"{invoice.finalized_at:%B %-d, %Y}" if invoice.finalized_at else ""),
        ("Billed to", customer.name or customer.email),
        *([("Email", customer.email)] if customer.name else []),
        ("Customer", customer.public_id),
    ]
    if receipt.plan_name:
        facts.append(("Plan", receipt.plan_name))
    if invoice.period_start and invoice.period_end:
        facts.append(
            ("Period", f"{invoice.period_start:%B %-d, %Y} to {invoice.period_end:%B %-d, %Y}")
        )
    if invoice.paid_at:
        facts.append(("Paid", f"{invoice.paid_at:%B %-d, %Y}"))
    lines = [(line.description, money(line.amount)) for line in receipt.lines]
    totals = [
        ("Total", money(invoice.total)),
        ("Amount paid", money(invoice.amount_paid)),
        *([("Refunded", money(-receipt.refunded))] if receipt.refunded else []),
        *([("Amount due", money(receipt.amount_due))] if receipt.amount_due else []),
    ]
    payments = [
        (
            f"{payment.created_at:%B %-d, %Y} - {payment.get_status_display()}"
            + (f" - {payment.payment_method}" if payment.payment_method else ""),
            money(payment.amount),
        )
        for payment in receipt.payments
    ]
    refunds = [
        (f"{refund.created_at:%B %-d, %Y} - {refund.get_status_display()}", money(-refund.amount))
        for refund in receipt.refunds
    ]
    footer = f"Questions about this invoice? Write to {support_email}."

    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_author(brand_name)
    pdf.set_creation_date(invoice.finalized_at)
    texts = [brand_name, title, footer]
    for pairs in (facts, lines, totals, payments, refunds):
        texts.extend(text for pair in pairs for text in pair)
    _fonts_add(pdf, texts)
    pdf.add_page()
    _font(pdf, 18, bold=True)
    pdf.cell(0, 10, brand_name, new_x="LMARGIN", new_y="NEXT")
    _font(pdf, 11)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for label, value in facts:
        _font(pdf, 10, bold=True)
        pdf.cell(35, 6, label)
        _font(pdf, 10)
        pdf.cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(5)
    _table(pdf, heading=("Description", "Amount"), rows=lines, footer=totals)
    if payments:
        pdf.ln(5)
        _table(pdf, heading=("Payment", "Amount"), rows=payments)
    if refunds:
        pdf.ln(5)
        _table(pdf, heading=("Refund", "Amount"), rows=refunds)
    pdf.ln(8)
    _font(pdf, 9)
    pdf.multi_cell(0, 5, footer)
    return bytes(pdf.output())


def _table(
    pdf: FPDF,
    *,
    heading: tuple[str, str],
    rows: list[tuple[str, str]],
    footer: list[tuple[str, str]] | None = None,
) -> None:
    width = pdf.epw - 40
    _font(pdf, 10, bold=True)
    pdf.cell(width, 7, heading[0], border="B")
    pdf.cell(40, 7, heading[1], border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    _font(pdf, 10)
    for description, amount in rows:
        pdf.cell(width, 7, description)
        pdf.cell(40, 7, amount, align="R", new_x="LMARGIN", new_y="NEXT")
    _font(pdf, 10, bold=True)
    for index, (label, amount) in enumerate(footer or []):
        border = "T" if index == 0 else ""
        pdf.cell(width, 7, label, border=border)
        pdf.cell(40, 7, amount, border=border, align="R", new_x="LMARGIN", new_y="NEXT")
