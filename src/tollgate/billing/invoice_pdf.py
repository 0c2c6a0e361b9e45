"""An invoice receipt as a PDF document, drawn from the same ``InvoiceReceipt`` as its web page.

The PDF uses the core Helvetica font, which covers Latin-1 only: any other character (a currency
symbol such as ₹, a bullet) is replaced by its closest plain form rather than failing the download.
"""

from __future__ import annotations

import unicodedata

from fpdf import FPDF

from tollgate.billing.selectors import InvoiceReceipt
from tollgate.core.money import Money

_REPLACEMENTS = {
    "\u2022": "*",  # bullet
    "\u20ac": "EUR ",  # euro sign
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
}


def _latin1(text: str) -> str:
    for char, plain in _REPLACEMENTS.items():
        text = text.replace(char, plain)
    text = unicodedata.normalize("NFKC", text)
    return text.encode("latin-1", errors="replace").decode("latin-1")


def invoice_pdf_render(*, receipt: InvoiceReceipt, brand_name: str, support_email: str) -> bytes:
    """The receipt of ``receipt.invoice`` as PDF bytes: header, billed-to, lines, totals, payments
    and refunds."""
    invoice = receipt.invoice
    currency = invoice.currency

    def money(amount: int) -> str:
        return _latin1(Money(amount, currency).format())

    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"Invoice {invoice.number}"))
    pdf.set_author(_latin1(brand_name))
    pdf.set_creation_date(invoice.finalized_at)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=18)
    pdf.cell(0, 10, _latin1(brand_name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.cell(0, 7, _latin1(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    facts = [
        ("Status", invoice.get_status_display()),
        ("Issued", f"{invoice.finalized_at:%B %-d, %Y}" if invoice.finalized_at else ""),
        ("Billed to", invoice.customer.email),
        ("Customer", invoice.customer.public_id),
    ]
    if receipt.plan_name:
        facts.append(("Plan", receipt.plan_name))
    if invoice.period_start and invoice.period_end:
        facts.append(
            ("Period", f"{invoice.period_start:%B %-d, %Y} to {invoice.period_end:%B %-d, %Y}")
        )
    if invoice.paid_at:
        facts.append(("Paid", f"{invoice.paid_at:%B %-d, %Y}"))
    pdf.ln(3)
    for label, value in facts:
        pdf.set_font("Helvetica", style="B", size=10)
        pdf.cell(35, 6, _latin1(label))
        pdf.set_font("Helvetica", size=10)
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")

    pdf.ln(5)
    _table(
        pdf,
        heading=("Description", "Amount"),
        rows=[(line.description, money(line.amount)) for line in receipt.lines],
        footer=[
            ("Total", money(invoice.total)),
            ("Amount paid", money(invoice.amount_paid)),
            *([("Refunded", money(-receipt.refunded))] if receipt.refunded else []),
            *([("Amount due", money(receipt.amount_due))] if receipt.amount_due else []),
        ],
    )
    if receipt.payments:
        pdf.ln(5)
        _table(
            pdf,
            heading=("Payment", "Amount"),
            rows=[
                (
                    f"{payment.created_at:%B %-d, %Y} - {payment.get_status_display()}"
                    + (f" - {payment.payment_method}" if payment.payment_method else ""),
                    money(payment.amount),
                )
                for payment in receipt.payments
            ],
        )
    if receipt.refunds:
        pdf.ln(5)
        _table(
            pdf,
            heading=("Refund", "Amount"),
            rows=[
                (
                    f"{refund.created_at:%B %-d, %Y} - {refund.get_status_display()}",
                    money(-refund.amount),
                )
                for refund in receipt.refunds
            ],
        )
    pdf.ln(8)
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 5, _latin1(f"Questions about this invoice? Write to {support_email}."))
    return bytes(pdf.output())


def _table(
    pdf: FPDF,
    *,
    heading: tuple[str, str],
    rows: list[tuple[str, str]],
    footer: list[tuple[str, str]] | None = None,
) -> None:
    width = pdf.epw - 40
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.cell(width, 7, heading[0], border="B")
    pdf.cell(40, 7, heading[1], border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for description, amount in rows:
        pdf.cell(width, 7, _latin1(description))
        pdf.cell(40, 7, amount, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", style="B", size=10)
    for index, (label, amount) in enumerate(footer or []):
        border = "T" if index == 0 else ""
        pdf.cell(width, 7, label, border=border)
        pdf.cell(40, 7, amount, border=border, align="R", new_x="LMARGIN", new_y="NEXT")
