"""Printable documents, as A4 PDFs: the declaration (the reference, the validity, the purposes,
a QR code of the signed token, which a desk scans and verifies with the published keys, and
beside it the verification code, with which a desk checks it online), the local insert of an
order of information bags, and the travel-cost fund's yearly statement of what it paid a
caregiver, for the tax return."""
import io
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer
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


def _page(buffer, title, heading):
    """A new A4 canvas with its heading; (canvas, left margin, y below the heading)."""
    page = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    page.setTitle(title)
    left, y = 25 * mm, A4[1] - 30 * mm
    page.setFont("Helvetica-Bold", 20)
    page.drawString(left, y, heading)
    page.setFont("Helvetica", 11)
    return page, left, y


def render(declaration):
    """PDF bytes for what the declaration service's ``printable`` answered."""
    buffer = io.BytesIO()
    page, left, y = _page(buffer, f"Mantelzorgverklaring {declaration['reference']}",
                          "Mantelzorgverklaring")
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
    qr_bottom = y - 15 * mm - QR_SIZE
    renderPDF.draw(drawing, page, left, qr_bottom)
    if declaration.get("verification_code"):
        beside = left + QR_SIZE + 10 * mm
        page.drawString(beside, qr_bottom + QR_SIZE / 2 + 4 * mm, "Verificatiecode:")
        page.setFont("Courier-Bold", 14)
        page.drawString(beside, qr_bottom + QR_SIZE / 2 - 3 * mm, declaration["verification_code"])
    page.setFont("Helvetica", 9)
    page.drawString(left, y - 20 * mm - QR_SIZE,
                    "De QR-code bevat een ondertekende verklaring; controleer die met de sleutels "
                    "op /.well-known/jwks.json.")
    page.showPage()
    page.save()
    return buffer.getvalue()


def render_insert(insert):
    """PDF bytes of a local insert as the campaign service's ``bag_order_insert`` answered
    it: the support points that serve the municipality, then its own lines. It flows over as
    many pages as the points need."""
    buffer = io.BytesIO()
    styles = getSampleStyleSheet()
    title = f"Mantelzorg in {insert['municipality_name']}"
    document = SimpleDocTemplate(buffer, pagesize=A4, title=title, invariant=1,
                                 leftMargin=25 * mm, rightMargin=25 * mm,
                                 topMargin=25 * mm, bottomMargin=20 * mm)
    story = [Paragraph(escape(title), styles["Title"]),
             Paragraph("Zorgt u voor iemand? U staat er niet alleen voor. Hier vindt u steun "
                       "bij u in de buurt. #deeljezorg", styles["BodyText"]),
             Spacer(1, 6 * mm)]
    if insert["support_points"]:
        story.append(Paragraph("Steunpunten mantelzorg", styles["Heading2"]))
    for point in insert["support_points"]:
        lines = [f"<b>{escape(point['name'])}</b>"]
        lines += [escape(value) for value in (point.get("address_line"), point.get("phone"),
                                              point.get("website")) if value]
        story.append(KeepTogether([Paragraph("<br/>".join(lines), styles["BodyText"]),
                                   Spacer(1, 3 * mm)]))
    if insert["own_lines"]:
        story.append(Paragraph(f"Gemeente {escape(insert['municipality_name'])}",
                               styles["Heading2"]))
        story += [Paragraph(escape(line), styles["BodyText"]) for line in insert["own_lines"]]
    story += [Spacer(1, 6 * mm),
              Paragraph(f"Bijlage bij bestelling {escape(insert['order_id'])} "
                        f"({insert['municipality_code']})", styles["Italic"])]
    document.build(story)
    return buffer.getvalue()
def declaration_document(context, reference):
    """The printable declaration for its owner caregiver or the issuing municipality: the
    same for the API (bearer token) and the caregiver's pages (session)."""
    context.principal.require("caregiver", "municipality")
    return render(context.call("declaration", "printable", reference, context.actor))


def pdf_response(document, filename):
    return Response(document, mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{filename}"',
        "Cache-Control": "private, no-store"})
def _euros(text):
    """'1234.50' as Dutch money: 'EUR 1.234,50'."""
    whole, _, cents = f"{Decimal(text):,.2f}".partition(".")
    return f"EUR {whole.replace(',', '.')},{cents}"


def render_travel_statement(statement):
    """PDF bytes for what the travel-cost fund's ``travel_statement`` answered: the year's
    total and every claim paid in it, continued on further pages when long."""
    buffer = io.BytesIO()
    year = statement["year"]
    page, left, y = _page(buffer, f"Jaaroverzicht reiskostenfonds {year}",
                          f"Jaaroverzicht reiskostenfonds {year}")
    y -= 15 * mm
    for label, value in (("Uitbetaalde declaraties", str(statement["claim_count"])),
                         ("Totaal uitbetaald", _euros(statement["paid_euros"]))):
        page.drawString(left, y, f"{label}:")
        page.drawString(left + 55 * mm, y, value)
        y -= 7 * mm
    y -= 6 * mm
    columns = (("Betaald op", 0), ("Mantelzorgverklaring", 30 * mm), ("Declaratie", 80 * mm),
               ("Bedrag", 140 * mm))
    for claim in [None, *statement["claims"]]:    # None: the column headings
        if y < 25 * mm:
            page.showPage()
            page.setFont("Helvetica", 11)
            y = A4[1] - 25 * mm
        if claim is None:
            page.setFont("Helvetica-Bold", 11)
            for label, x in columns:
                page.drawString(left + x, y, label)
            page.setFont("Helvetica", 11)
        else:
            values = (_day(claim["paid_on"]), claim["declaration_reference"], claim["id"],
                      _euros(claim["amount_euros"]))
            for (_, x), value in zip(columns, values):
                page.drawString(left + x, y, value)
        y -= 6 * mm
    page.setFont("Helvetica", 9)
    page.drawString(left, max(y - 6 * mm, 15 * mm),
                    "Vergoedingen uit het reiskostenfonds mantelzorg, per kalenderjaar van betaling.")
    page.showPage()
    page.save()
    return buffer.getvalue()


MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
          "september", "oktober", "november", "december")


def _long_day(text):
    """'2026-03-01' or a moment -> '1 maart 2026'."""
    when = date.fromisoformat(text[:10])
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def decision_letter(context, reference):
    """The decision letter for the owner caregiver or the municipality it was requested at."""
    context.principal.require("caregiver", "municipality")
    return render_decision_letter(context.call("declaration", "decision_letter", reference,
                                               context.actor))


def render_decision_letter(letter):
    """PDF bytes of the letter with the municipality's decision on a request, as the
    declaration service's ``decision_letter`` answered it: the decision and its reason, the
    validity and purposes, the municipality, the date, and how to object (Awb 6:7: bezwaar
    within six weeks, to the municipality)."""
    buffer = io.BytesIO()
    styles = getSampleStyleSheet()
    municipality = letter.get("municipality_name") or letter["municipality_code"]
    reference, issued = letter["reference"], letter["decision"] == "ISSUED"
    document = SimpleDocTemplate(buffer, pagesize=A4, invariant=1,
                                 title=f"Besluit op aanvraag {reference}",
                                 leftMargin=25 * mm, rightMargin=25 * mm,
                                 topMargin=25 * mm, bottomMargin=20 * mm)

    def text(words, style="BodyText"):
        return Paragraph(escape(words), styles[style])

    story = [text(f"Gemeente {municipality}", "Heading2"),
             text(f"Aan: {letter['caregiver_name']}"),
             text(f"Datum: {_long_day(letter['decided_at'])}"),
             text(f"Kenmerk: {reference}"), Spacer(1, 6 * mm),
             text("Besluit op uw aanvraag van een mantelzorgverklaring", "Title"),
             text(f"Beste {letter['caregiver_name']},"),
             text(f"Op {_long_day(letter['requested_at'])} vroeg u bij de gemeente "
                  f"{municipality} een mantelzorgverklaring aan.")]
    if issued:
        story.append(text("Wij hebben besloten: u krijgt de mantelzorgverklaring.", "Heading3"))
        story.append(text(f"De verklaring is geldig van {_long_day(letter['valid_from'])} tot en "
                          f"met {_long_day(letter['valid_until'])}. U kunt haar gebruiken voor:"))
        story += [text(f"- {PURPOSE_NAMES.get(p, p)}") for p in letter["purposes"]]
        if letter.get("reason"):
            story.append(text(f"Toelichting: {letter['reason']}"))
    else:
        story.append(text("Wij hebben besloten: u krijgt de mantelzorgverklaring niet. Wij "
                          "wijzen uw aanvraag af.", "Heading3"))
        story.append(text(f"De reden: {letter.get('reason') or ''}"))
    if letter.get("revoked_at"):
        story.append(text(f"Let op: de gemeente heeft deze verklaring op "
                          f"{_long_day(letter['revoked_at'])} ingetrokken. De reden: "
                          f"{letter.get('revocation_reason') or ''}"))
    story += [Spacer(1, 4 * mm), text("Bent u het niet eens met dit besluit?", "Heading3"),
              text(f"Dan kunt u bezwaar maken bij de gemeente {municipality}. Doe dat binnen "
                   "zes weken na de datum van deze brief. Schrijf in uw bezwaar uw naam en "
                   f"adres, de datum, het kenmerk {reference} en waarom u het niet eens bent "
                   "met het besluit, en zet uw handtekening eronder (artikel 6:5 en 6:7 van de "
                   "Algemene wet bestuursrecht)."),
              Spacer(1, 6 * mm), text("Met vriendelijke groet,"),
              text(f"Het college van burgemeester en wethouders van {municipality}")]
    document.build(story)
    return buffer.getvalue()
