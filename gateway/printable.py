"""The printable declaration: an A4 PDF with the reference, the validity, the purposes and a
QR code of the signed token, which a desk scans and verifies with the published keys."""
import io
from datetime import date

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas
from werkzeug.wrappers import Response

PURPOSE_NAMES = {
    "PARKING_PERMIT": "Parkeervergunning",
    "CARE_HOUSING": "Mantelzorgwoning",
    "CO_TENANCY": "Medehuurderschap",
    "HOUSING_URGENCY": "Urgentieverklaring",
    "JOB_SEEKING_EXEMPTION": "Ontheffing sollicitatieplicht",
    "TRAVEL_COST_FUND": "Reiskostenfonds",
    "OTHER": "Overig",
}
QR_SIZE = 70 * mm


def _day(text):
    return date.fromisoformat(text).strftime("%d-%m-%Y")


def render(declaration):
    """PDF bytes for what the declaration service's ``printable`` answered."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    page.setTitle(f"Mantelzorgverklaring {declaration['reference']}")
    width, height = A4
    left, y = 25 * mm, height - 30 * mm
    page.setFont("Helvetica-Bold", 20)
    page.drawString(left, y, "Mantelzorgverklaring")
    page.setFont("Helvetica", 11)
    lines = [
        ("Kenmerk", declaration["reference"]),
        ("Afgegeven door", f"{declaration.get('municipality_name') or ''} "
                           f"({declaration['municipality_code']})".strip()),
        ("Geldig van", _day(declaration["valid_from"])),
        ("Geldig tot en met", _day(declaration["valid_until"])),
    ]
    y -= 15 * mm
    for label, value in lines:
        page.drawString(left, y, f"{label}:")
        page.drawString(left + 45 * mm, y, value)
        y -= 7 * mm
    y -= 3 * mm
    page.drawString(left, y, "Geldig voor:")
    for purpose in declaration["purposes"]:
        y -= 7 * mm
        page.drawString(left + 5 * mm, y, f"- {PURPOSE_NAMES.get(purpose, purpose)}")

    widget = QrCodeWidget(declaration["token"], barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(QR_SIZE, QR_SIZE,
                      transform=[QR_SIZE / (x1 - x0), 0, 0, QR_SIZE / (y1 - y0), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, page, left, y - 15 * mm - QR_SIZE)
    page.setFont("Helvetica", 9)
    page.drawString(left, y - 20 * mm - QR_SIZE,
                    "De QR-code bevat een ondertekende verklaring; controleer die met de sleutels "
                    "op /.well-known/jwks.json.")
    page.showPage()
    page.save()
    return buffer.getvalue()


def pdf_response(context, reference):
    """The printable declaration for its owner caregiver or the issuing municipality: the
    same answer for the API (bearer token) and the caregiver's pages (session)."""
    context.principal.require("caregiver", "municipality")
    document = render(context.call("declaration", "printable", reference, context.actor))
    return Response(document, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{reference}.pdf"',
        "Cache-Control": "private, no-store"})
