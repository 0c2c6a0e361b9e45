"""Receipt PDFs carry brand, plan and customer names in any script: Greek, Cyrillic, Chinese,
Japanese, Korean and emoji come out of the PDF as they went in, never as '?'.

The text is read back from the PDF itself: each text-showing operator's glyph codes are mapped
to characters through the ToUnicode map of the font it was set in (what a PDF reader's copy
and search use), so a glyph drawn in the wrong font or replaced by '?' shows up."""

from __future__ import annotations

import re
import zlib

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.invoice_pdf import invoice_pdf_render
from tollgate.billing.models import Customer
from tollgate.billing.selectors import invoice_receipt
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load

pytestmark = pytest.mark.django_db

BRAND = "Ωμέγα Облако 云端 🚀"
PLAN = "Профессиональный プロ 프로 Πρό ✨"
CUSTOMER = "Δημήτρης Иванов 王小明 🎉"


# --- Reading text back from a PDF -------------------------------------------------------------------
def _objects(pdf: bytes) -> dict[int, bytes]:
    return {int(num): body for num, body in re.findall(rb"(\d+) 0 obj\s*(.*?)endobj", pdf, re.S)}


def _stream(body: bytes) -> bytes:
    data = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
    assert data is not None
    raw = data.group(1)
    return zlib.decompress(raw) if b"/FlateDecode" in body.split(b"stream")[0] else raw


def _to_unicode(cmap: bytes) -> dict[int, str]:
    """A ToUnicode CMap (bfchar and bfrange entries) as glyph code -> text."""
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, text in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(code, 16)] = bytes.fromhex(text.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for first, last, start in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
        ):
            base = bytes.fromhex(start.decode()).decode("utf-16-be")
            for offset, code in enumerate(range(int(first, 16), int(last, 16) + 1)):
                mapping[code] = base[:-1] + chr(ord(base[-1]) + offset)
    return mapping


def _literal(token: bytes) -> bytes:
    """The bytes of a PDF literal string ``(...)`` (its backslash escapes undone)."""
    out = bytearray()
    index = 1
    while index < len(token) - 1:
        char = token[index]
        if char == 0x5C:  # backslash
            index += 1
            escaped = token[index : index + 1]
            octal = re.match(rb"[0-7]{1,3}", token[index : index + 3])
            if octal:
                out.append(int(octal.group(), 8))
                index += len(octal.group())
                continue
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(
                escaped, escaped
            )
        else:
            out.append(char)
        index += 1
    return bytes(out)


def pdf_text(pdf: bytes) -> str:
    """The text a PDF shows, through each font's ToUnicode map (two-byte codes, Identity-H)."""
    objects = _objects(pdf)
    # Font resource name -> its ToUnicode map; None for a simple font without one (the core
    # Helvetica: one byte per character, Latin-1).
    fonts: dict[bytes, dict[int, str] | None] = {}
    for body in objects.values():
        resources = re.search(rb"/Font\s*<<(.*?)>>", body, re.S)
        if resources is None:
            continue
        for name, ref in re.findall(rb"/(\w+)\s+(\d+) 0 R", resources.group(1)):
            unicode_ref = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)])
            fonts[name] = (
                _to_unicode(_stream(objects[int(unicode_ref.group(1))])) if unicode_ref else None
            )
    text: list[str] = []
    # Operators read: a font chosen (Tf), text shown (Tj), the end of a text object (ET), and
    # the graphics state saved and restored (q, Q), which carries the font.
    operators = rb"/(\w+) [\d.]+ Tf|(\((?:\\.|[^\\)])*\)) Tj|\b(ET|q|Q)\b"
    for body in objects.values():
        if b"stream" not in body or b"/Length1" in body:
            continue  # not a stream, or an embedded font file
        content = _stream(body)
        if not re.search(rb"\bBT\b", content):
            continue  # not a page's content
        current: dict[int, str] | None = None
        saved: list[dict[int, str] | None] = []
        for token in re.finditer(operators, content, re.S):
            if token.group(1):
                current = fonts[token.group(1)]
            elif token.group(2):
                data = _literal(token.group(2))
                if current is None:
                    text.append(data.decode("latin-1"))
                    continue
                codes = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
                text.append("".join(current.get(code, "\ufffd") for code in codes))
            elif token.group(3) == b"q":
                saved.append(current)
            elif token.group(3) == b"Q":
                current = saved.pop()
            else:
                text.append("\n")
    return "".join(text)


# --- The receipt ---------------------------------------------------------------------------------------
@pytest.fixture
def receipt(customer):
    catalog_load(
        document={
            "products": [
                {
                    "code": "app",
                    "name": "App",
                    "plans": [
                        {
                            "code": "pro",
                            "name": PLAN,
                            "prices": [{"amount": 2900, "currency": "EUR", "interval": "month"}],
                        }
                    ],
                }
            ]
        }
    )
    # No service edits a customer's name yet: it is set as an operator's import would set it.
    Customer.objects.filter(pk=customer.pk).update(name=CUSTOMER)
    customer.refresh_from_db()
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=Price.objects.get(), idempotency_key=new_key()
    )
    return invoice_receipt(customer=customer, public_id=subscription.invoices.get().public_id)


def test_names_in_greek_cyrillic_cjk_and_emoji_come_out_of_the_receipt_intact(receipt):
    pdf = invoice_pdf_render(receipt=receipt, brand_name=BRAND, support_email="help@example.org")

    text = pdf_text(pdf)
    for name in (BRAND, PLAN, CUSTOMER):
        assert name in text
    assert "€29.00" in text
    assert "?" not in text.replace("Questions about this invoice?", "")
    assert "\ufffd" not in text
