"""The caregiver's pages: what each shows and what each form does. Every change goes through
a contract operation (``operations.py``) as the signed-in caregiver."""
from datetime import date

from nameko.exceptions import RpcTimeout, UnknownService

from common import config as settings
from common.errors import Forbidden, NotFound, Unavailable
from common.validators import pc4_of, validate_bsn
from gateway import printable
from gateway.web import operations, signin
from gateway.web.app import OperationRefused, ServiceDown
from gateway.web.forms import Form
from gateway.web.session import new_subject
from gateway.web.texts import AREA_NAMES, MODE_NAMES, RELATIONSHIP_NAMES, PURPOSE_NAMES

MAX_TRIPS = 20


def start(page):
    return page.render("start.html")


def not_found(page):
    return page.render("not_found.html", status=404)


def accessibility(page):
    return page.render("accessibility.html")


# --- support points: no sign-in ----------------------------------------------------------

def support_points(page):
    form = Form({"postcode": page.request.args.get("postcode"),
                 "hulp": page.request.args.get("hulp")})
    points = None
    if "postcode" in page.request.args:
        postcode = form.required("postcode", "een postcode")
        if postcode:
            try:
                pc4_of(postcode)
            except ValueError:
                form.fail("postcode", "Vul een postcode in zoals 1234 AB, of alleen de vier "
                                      "cijfers, zoals 1234.")
        if form.get("hulp") and form.get("hulp") not in AREA_NAMES:
            form.fail("hulp", "Kies een soort hulp uit de lijst.")
        if not form.errors:
            try:
                points = page.graphql(operations.NEAREST_SUPPORT_POINTS,
                                      {"postcode": postcode, "area": form.get("hulp") or None}
                                      )["nearestSupportPoints"]
            except OperationRefused as refusal:
                form.refused(refusal, {"postcode": ("postcode", "Deze postcode kennen we niet. "
                                                    "Controleer de postcode.")},
                             "Zoeken lukte niet. Controleer wat u heeft ingevuld.")
    return page.render("support_points.html", form=form, errors=form.errors, points=points)


# --- signing in and out --------------------------------------------------------------------

def sign_in(page):
    provider = signin.identity_provider()
    next_page = signin.safe_next_path(page.request.values.get("volgende"))
    form = Form({"bsn": page.form.get("bsn")} if page.request.method == "POST" else {})
    if page.request.method == "POST":
        # The development sign-in is off when an identity provider is set, and always in
        # production (where the gateway does not start without one).
        if provider or settings.is_production():
            return page.render("refused.html", status=403)
        bsn = "".join(form.get("bsn").split())
        if not bsn:
            form.fail("bsn", "Vul uw burgerservicenummer (BSN) in.")
        else:
            try:
                bsn = validate_bsn(bsn)
            except ValueError:
                form.fail("bsn", "Dit is geen geldig BSN. Een BSN heeft 9 cijfers; u vindt "
                                 "het op uw paspoort, identiteitskaart of rijbewijs.")
        if not form.errors:
            page.sign_in(bsn=bsn, sub=new_subject())
            page.session.flash("U bent ingelogd.")
            return page.redirect(next_page)
        form.values["bsn"] = ""   # never sent back into the page
    return page.render("sign_in.html", form=form, errors=form.errors, provider=provider,
                       next_page=next_page, status=400 if form.errors else 200)


def sign_in_with_provider(page):
    provider = signin.identity_provider()
    if not provider:
        return page.redirect("/inloggen")
    return page.redirect(provider.authorization_redirect(
        page.session, signin.safe_next_path(page.request.args.get("volgende"))))


def sign_in_callback(page):
    provider = signin.identity_provider()
    if not provider:
        return page.redirect("/inloggen")
    return complete_sign_in(page, provider.complete, "sign_in.html", provider, "/verklaringen")


def complete_sign_in(page, complete, template, provider, home):
    """The identity provider's answer: signed in (``complete`` reads who) and on to the
    page asked for, or the sign-in page ``template`` saying that it did not succeed."""
    try:
        identity = complete(page.session, page.request.args)
    except signin.SignInFailed as failure:
        return page.render(template, form=Form({}), provider=provider,
                           errors={"": failure.message}, next_page=home, status=400)
    next_page = identity.pop("next", home)
    page.sign_in(**identity)
    page.session.flash("U bent ingelogd.")
    return page.redirect(next_page)


def sign_out(page):
    if page.request.method == "POST":
        page.sign_out()
        page.session.flash("U bent uitgelogd.")
        return page.redirect("/")
    return page.render("sign_out.html")


# --- declarations ---------------------------------------------------------------------

def declarations(page):
    page.require_sign_in()
    found = page.graphql(operations.MY_DECLARATIONS)["myDeclarations"]
    found.sort(key=lambda d: d["createdAt"], reverse=True)
    return page.render("declarations.html", declarations=found)


def declaration_pdf(page, reference):
    page.require_sign_in()
    return _pdf(page, printable.declaration_document, reference, f"{reference}.pdf")


def _pdf(page, document, reference, filename):
    """``document(context, reference)`` as a PDF for the page's signed-in caller; the
    not-found page for whom it is not."""
    try:
        return printable.pdf_response(document(page.context(), reference), filename)
    except (NotFound, Forbidden):
        return not_found(page)
    except (RpcTimeout, UnknownService, TimeoutError, Unavailable):
        raise ServiceDown() from None


def decision_letter(page, reference):
    """The municipality's decision on the caregiver's request, as a letter (PDF)."""
    page.require_sign_in()
    return letter_response(page, reference)


def letter_response(page, reference):
    """The decision letter as PDF for the page's caregiver or municipality (the desk's too);
    the not-found page for anyone else."""
    return _pdf(page, printable.decision_letter, reference, f"besluit-{reference}.pdf")


def personal_data_access(page):
    """Wie heeft uw gegevens bekeken: every read of the caregiver's data by someone else."""
    page.require_sign_in()
    reads = page.graphql(operations.MY_PERSONAL_DATA_ACCESS)["myPersonalDataAccess"]
    return page.render("personal_data_access.html", reads=reads)


def renew_code(page):
    page.require_sign_in()
    if page.request.method == "GET":   # e.g. back here after signing in again
        return page.redirect("/verklaringen")
    try:
        renewed = page.graphql(operations.RENEW_VERIFICATION_CODE,
                               {"id": page.form.get("verklaring", "")})["renewVerificationCode"]
    except OperationRefused:
        page.session.flash("Een nieuwe code aanvragen lukte niet. Probeer het later opnieuw.")
    else:
        page.session.flash(f"Verklaring {renewed['reference']} heeft een nieuwe controlecode. "
                           "De oude code werkt niet meer.")
    return page.redirect("/verklaringen")


DECLARATION_FORM_FIELDS = {
    "gemeente": ("input.municipalityCode",
                 "Deze gemeentecode kennen we niet. Vul de code in zoals GM0363."),
    "naam": ("input.caregiver.name", "Vul uw naam in."),
    "postcode": ("input.caregiver.postcode", "Vul uw postcode in zoals 1234 AB."),
    "email": ("input.caregiver.email", "Vul een e-mailadres in zoals naam@voorbeeld.nl, "
                                       "of laat het leeg."),
    "naaste-naam": ("input.careRecipient.name", "Vul de naam in van de persoon voor wie u zorgt."),
    "naaste-postcode": ("input.careRecipient.postcode",
                        "Vul de postcode van de persoon voor wie u zorgt in zoals 1234 AB."),
    "relatie": ("input.careRecipient.relationship", "Kies wie de persoon voor u is."),
    "uren": ("input.hoursPerWeek", "Vul het aantal uren per week in als een getal."),
    "sinds": ("input.careSince", "Vul een datum in het verleden in, zoals 15-03-2025."),
    "doelen": ("input.purposes", "Kies waarvoor u de verklaring wilt gebruiken."),
}


def request_declaration(page):
    page.require_sign_in()
    values = {name: page.form.get(name) for name in DECLARATION_FORM_FIELDS}
    form = Form(values)
    chosen = page.form.getlist("doelen") if page.request.method == "POST" else []
    if page.request.method == "POST":
        municipality = form.required("gemeente", "de code van de gemeente").upper()
        caregiver = {"bsn": page.session["bsn"], "name": form.required("naam", "uw naam"),
                     "postcode": form.postcode("postcode", "uw postcode"),
                     "email": form.get("email") or None}
        recipient = {"name": form.required("naaste-naam",
                                           "de naam van de persoon voor wie u zorgt"),
                     "postcode": form.postcode("naaste-postcode",
                                               "de postcode van de persoon voor wie u zorgt"),
                     "relationship": form.get("relatie")}
        if recipient["relationship"] not in RELATIONSHIP_NAMES:
            form.fail("relatie", "Kies wie de persoon voor u is.")
        hours = form.decimal("uren", "het aantal uren per week", "8 of 12,5")
        since = form.day("sinds", "de datum waarop u begon met zorgen", not_after=date.today())
        if not chosen or any(p not in PURPOSE_NAMES for p in chosen):
            form.fail("doelen", "Kies waarvoor u de verklaring wilt gebruiken.")
        if not form.errors:
            request = {"municipalityCode": municipality, "caregiver": caregiver,
                       "careRecipient": recipient, "hoursPerWeek": hours, "careSince": since,
                       "purposes": chosen}
            try:
                made = page.graphql(operations.REQUEST_DECLARATION,
                                    {"input": request})["requestDeclaration"]
            except OperationRefused as refusal:
                form.refused(refusal, DECLARATION_FORM_FIELDS, _general_refusal(refusal))
            else:
                page.session.flash(f"Uw aanvraag is verstuurd. Het kenmerk is "
                                   f"{made['reference']}. De gemeente beoordeelt uw aanvraag.")
                return page.redirect("/verklaringen")
    return page.render("request_declaration.html", form=form, errors=form.errors,
                       chosen=chosen, status=400 if form.errors else 200)


def _general_refusal(refusal):
    if "CONFLICT" in refusal.codes:
        return ("U heeft al een verklaring of een aanvraag voor deze persoon. U vindt die bij "
                "Mijn verklaringen.")
    if "FORBIDDEN" in refusal.codes:
        return "Dit kunt u niet doen met de gegevens waarmee u bent ingelogd."
    if "NOT_FOUND" in refusal.codes:
        return "We konden niet vinden waar het om gaat. Kijk bij Mijn verklaringen."
    return "Niet alles is goed ingevuld. Controleer uw gegevens."


# --- travel claims ----------------------------------------------------------------------

def travel_claims(page):
    page.require_sign_in()
    claims = page.graphql(operations.MY_TRAVEL_CLAIMS)["myTravelClaims"]
    claims.sort(key=lambda c: c["submittedAt"], reverse=True)
    return page.render("travel_claims.html", claims=claims)


TRIP_FIELDS = {   # form field of a trip row -> contract field, and the message when refused
    "datum": ("date", "Vul de datum van de rit in, op of na de ingangsdatum van uw verklaring "
                      "en niet in de toekomst."),
    "van": ("fromPostcode", "Vul de postcode van vertrek in zoals 1234 AB."),
    "naar": ("toPostcode", "Vul de postcode van aankomst in zoals 1234 AB."),
    "km": ("distanceKm", "Vul de afstand enkele reis in kilometers in, bijvoorbeeld 12,5."),
    "vervoer": ("mode", "Kies hoe u reisde."),
    "kosten": ("costEuros", "Vul de kosten in euro in, bijvoorbeeld 7,50. Dat is nodig bij "
                            "openbaar vervoer en taxi, en niet bij auto of fiets."),
}
CLAIM_FORM_FIELDS = {
    "verklaring": ("input.declarationReference",
                   "Kies een afgegeven verklaring die geldt voor het reiskostenfonds."),
    "iban": ("input.iban", "Vul een geldig rekeningnummer (IBAN) in, zoals NL91 ABNA 0417 1643 00."),
    "rekeninghouder": ("input.accountHolder", "Vul de naam van de rekeninghouder in."),
}


def _trip_rows(form_data):
    count = form_data.get("ritten", "1")
    count = min(max(int(count), 1), MAX_TRIPS) if count.isdigit() else 1
    rows = []
    for index in range(count):
        rows.append({name: (form_data.get(f"rit-{index}-{name}") or "").strip()
                     for name in (*TRIP_FIELDS, "retour")})
    return rows


def _claim_form(page, rows):
    values = {name: page.form.get(name) for name in CLAIM_FORM_FIELDS}
    for index, row in enumerate(rows):
        values.update({f"rit-{index}-{name}": value for name, value in row.items()})
    return Form(values)


def _claim_input(form, rows):
    """The contract's TravelClaimInput from the form, or None with the form's errors set."""
    claim = {"declarationReference": form.required("verklaring", "welke verklaring u gebruikt"),
             "iban": "".join(form.required("iban", "uw rekeningnummer (IBAN)").split()).upper(),
             "accountHolder": form.required("rekeninghouder", "de naam van de rekeninghouder"),
             "trips": []}
    for index, row in enumerate(rows):
        field = f"rit-{index}-".__add__
        number = f"rit {index + 1}"
        mode = row["vervoer"]
        if mode not in MODE_NAMES:
            form.fail(field("vervoer"), f"Kies hoe u reisde bij {number}.")
        trip = {
            "date": form.day(field("datum"), f"de datum van {number}", not_after=date.today()),
            "fromPostcode": form.postcode(field("van"), f"de postcode van vertrek bij {number}"),
            "toPostcode": form.postcode(field("naar"), f"de postcode van aankomst bij {number}"),
            "distanceKm": form.decimal(field("km"), f"de afstand enkele reis bij {number}",
                                       "12,5"),
            "returnTrip": row["retour"] == "ja",
            "mode": mode,
            "costEuros": form.decimal(field("kosten"), f"de kosten van {number}", "7,50",
                                      required=mode in ("PUBLIC_TRANSPORT", "TAXI")),
        }
        if mode in ("CAR", "BICYCLE") and row["kosten"]:
            form.fail(field("kosten"), f"Laat de kosten leeg bij {number}: bij auto en fiets "
                                       "rekent het fonds met een bedrag per kilometer.")
        claim["trips"].append(trip)
    return None if form.errors else claim


def _claim_fields(rows):
    fields = dict(CLAIM_FORM_FIELDS)
    for index in range(len(rows)):
        for name, (contract_field, message) in TRIP_FIELDS.items():
            fields[f"rit-{index}-{name}"] = (f"input.trips.{index}.{contract_field}",
                                             f"Rit {index + 1}: {message}")
    return fields


def submit_travel_claim(page):
    page.require_sign_in()
    usable = [d for d in page.graphql(operations.MY_DECLARATIONS)["myDeclarations"]
              if d["status"] == "ISSUED" and "TRAVEL_COST_FUND" in d["purposes"]]
    if page.request.method == "GET":
        rows = _trip_rows({})
        form = _claim_form(page, rows)
        if len(usable) == 1:
            form.values["verklaring"] = usable[0]["reference"]
        return page.render("claim_form.html", form=form, rows=rows, declarations=usable)
    rows = _trip_rows(page.form)
    form = _claim_form(page, rows)
    action = page.form.get("actie")
    if action == "rit-toevoegen" and len(rows) < MAX_TRIPS:
        rows.append({name: "" for name in (*TRIP_FIELDS, "retour")})
        return page.render("claim_form.html", form=form, rows=rows, declarations=usable,
                           focus_row=len(rows) - 1)
    if action and action.startswith("rit-weghalen-") and len(rows) > 1:
        index = action.removeprefix("rit-weghalen-")
        if index.isdigit() and int(index) < len(rows):
            del rows[int(index)]
        return page.render("claim_form.html", form=_claim_form(page, rows), rows=rows,
                           declarations=usable)
    if action == "wijzigen":
        return page.render("claim_form.html", form=form, rows=rows, declarations=usable)
    claim = _claim_input(form, rows)
    if claim is not None:
        try:
            if action == "bevestigen":
                page.graphql(operations.SUBMIT_TRAVEL_CLAIM, {"input": claim})
                page.session.flash("Uw declaratie is ingediend. U ziet hieronder hoe het ermee "
                                   "staat.")
                return page.redirect("/reiskosten")
            preview = page.graphql(operations.PREVIEW_TRAVEL_CLAIM,
                                   {"input": claim})["travelClaimPreview"]
            return page.render("claim_check.html", form=form, rows=rows, claim=claim,
                               preview=preview)
        except OperationRefused as refusal:
            form.refused(refusal, _claim_fields(rows), _claim_refusal(refusal))
    return page.render("claim_form.html", form=form, errors=form.errors, rows=rows,
                       declarations=usable, status=400)


def _claim_refusal(refusal):
    if "CONFLICT" in refusal.codes:
        return "U heeft een van deze ritten al eerder gedeclareerd. Haal die rit weg."
    return _general_refusal(refusal)




# --- messages -----------------------------------------------------------------------------

def messages(page):
    page.require_sign_in()
    found = page.graphql(operations.MY_MESSAGES)["myMessages"]   # newest first
    return page.render("messages.html", messages=found)
