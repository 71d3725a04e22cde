"""The staff pages under /medewerkers: signing in for an organisation, and the municipality's
desk — the queue of requests waiting for a decision, one request with its applicant, and the
decision (issue, reject with a reason, revoke with a reason, renew the code, the decision
letter). Every change and every read goes through a contract operation as the signed-in
employee, with the same checks as for any client."""
import hashlib
from datetime import date

from common import config as settings
from gateway.web import operations, signin
from gateway.web.app import STAFF_PAGES, OperationRefused, ServiceDown
from gateway.web.forms import Form
from gateway.web.texts import AREA_NAMES, KIND_NAMES, QUEUE_STATUS_NAMES, ROLE_NAMES, STAFF_MENUS
from gateway.web.views import complete_sign_in, letter_response, not_found

HOME = signin.STAFF_HOME
SIGN_IN = STAFF_PAGES + "/inloggen"
QUEUE_PAGE_SIZE = 20
DESK = ("municipality",)   # who works the desk of declaration requests


def _staff_next_page(value):
    """Only a staff page of this site (see ``signin.safe_next_path``)."""
    chosen = signin.safe_next_path(value)
    return chosen if chosen == STAFF_PAGES or chosen.startswith(STAFF_PAGES + "/") else HOME


def development_subject(role, organisation, name):
    """The subject of a development sign-in: the same for the same person, and no name in
    it (the subject is kept in audit trails)."""
    digest = hashlib.sha256(f"{role}\x1f{organisation}\x1f{name}".encode()).hexdigest()
    return f"staff-{digest[:16]}"


def home(page):
    """Each role's first page (``texts.STAFF_MENUS``)."""
    if page.session.staff and page.session["role"] in STAFF_MENUS:
        return page.redirect(STAFF_MENUS[page.session["role"]][0][0])
    return page.render("staff_home.html")


# --- signing in and out ------------------------------------------------------------------

def sign_in(page):
    """The development form, in steps without JavaScript: the role first (a GET form), then
    for a municipality its name from the list of all municipalities, for a support point its
    municipality and then its name from that municipality's points, for a national role
    nothing more; then the name and ``Inloggen`` (a POST of ``rol``, ``organisatie``,
    ``naam``). The organisation's name is looked up once here and kept in the session."""
    provider = signin.staff_identity_provider()
    next_page = _staff_next_page(page.request.values.get("volgende"))
    posted = page.request.method == "POST"
    fields = ("rol", "organisatie", "naam", "gemeente")
    form = Form({name: (page.form if posted else page.request.args).get(name)
                 for name in fields})
    development = not (provider or settings.is_production())
    role = form.get("rol")
    if posted:
        # The development form is off when an identity provider is set, and always in
        # production.
        if not development:
            return page.render("refused.html", status=403)
        if role not in ROLE_NAMES:
            form.fail("rol", "Kies uw rol.")
        organisation = form.get("organisatie")
        if role == "municipality" and not organisation:
            form.fail("organisatie", "Kies uw gemeente.")
        if role == "support_point" and not organisation:
            form.fail("organisatie", "Kies uw steunpunt.")
        name = form.required("naam", "uw naam")
        if not form.errors:
            identity = signin.staff_identity(
                role, organisation if role == "municipality" else None,
                organisation if role == "support_point" else None, name,
                development_subject(role, organisation, name))
            named = identity and organisation_name_of(page, identity)
            if not named:
                form.fail("organisatie", "Kies uw gemeente uit de lijst." if role ==
                          "municipality" else "Kies uw steunpunt uit de lijst.")
            else:
                page.sign_in(**identity, organisation_name=named)
                page.session.flash("U bent ingelogd.")
                return page.redirect(_landing(next_page, role))
    elif "rol" in page.request.args and role not in ROLE_NAMES:
        form.fail("rol", "Kies uw rol.")
    if "rol" in form.errors:   # back to the first step, which has only the role
        form.errors = {"rol": form.errors["rol"]}
    chosen = role if role in ROLE_NAMES and "rol" not in form.errors else None
    lists = _organisation_lists(page, chosen, form) if development else {}
    if form.errors and chosen == "support_point" and not lists.get("points"):
        # no support point to choose (yet): the municipality's list is the one shown
        form.errors = {"gemeente": "Kies de gemeente van uw steunpunt, en dan uw steunpunt."
                       if lists.get("points") is None else
                       "Deze gemeente heeft geen steunpunt op het platform. Kies een andere "
                       "gemeente."}
    return page.render("staff_sign_in.html", form=form, errors=form.errors, provider=provider,
                       next_page=next_page, development=not settings.is_production(),
                       role=chosen, **lists, status=400 if form.errors else 200)


def _organisation_lists(page, role, form):
    """What the form's second step offers to choose from: every municipality by name (value:
    the CBS code) for a municipality and to find a support point; for a support point the
    points of the municipality chosen (value: the id), all pages of them."""
    if role not in ("municipality", "support_point"):
        return {}
    municipalities = {m["code"]: m["name"]
                      for m in page.graphql(operations.MUNICIPALITIES)["municipalities"]}
    if role == "municipality":
        return {"municipalities": municipalities}
    code = form.get("gemeente")
    if code not in municipalities:
        return {"municipalities": municipalities, "points": None}
    points, after = {}, None
    while True:
        found = page.graphql(operations.POINT_NAMES, {"code": code, "after": after})[
            "supportPoints"]
        points.update((p["id"], f"{p['name']} ({p['address']['city']})")
                      for p in found["items"])
        after = found["nextCursor"]
        if not after:
            return {"municipalities": municipalities, "points": points}


def organisation_name_of(page, identity):
    """The name of the organisation a staff member signs in for, once at sign-in: the
    municipality's name, the support point's name, the role's name for a national role; None
    when the platform does not know the municipality or support point."""
    if identity["role"] == "municipality":
        return next((m["name"] for m in page.graphql(operations.MUNICIPALITIES)[
            "municipalities"] if m["code"] == identity["municipality"]), None)
    if identity["role"] == "support_point":
        try:
            point = page.graphql(operations.POINT_NAME, {"id": identity["support_point"]})[
                "supportPoint"]
        except OperationRefused:   # not an id at all
            return None
        return point and point["name"]
    return ROLE_NAMES[identity["role"]]


def sign_in_with_provider(page):
    provider = signin.staff_identity_provider()
    if not provider:
        return page.redirect(SIGN_IN)
    return page.redirect(provider.authorization_redirect(
        page.session, _staff_next_page(page.request.args.get("volgende"))))


def sign_in_callback(page):
    provider = signin.staff_identity_provider()
    if not provider:
        return page.redirect(SIGN_IN)
    def complete(session, answer):
        identity = provider.complete_staff(session, answer)
        try:   # the organisation's name, or its code when the platform cannot tell
            named = organisation_name_of(page, identity)
        except ServiceDown:
            named = None
        return {**identity, "organisation_name": named or "",
                "next": _landing(identity["next"], identity["role"])}

    return complete_sign_in(page, complete, "staff_sign_in.html", provider, HOME)


def _landing(next_page, role):
    """Where a staff member goes after signing in: the page asked for, and without one the
    desk's queue, or for a role without a desk the staff start page."""
    return next_page if next_page != HOME or role in DESK else STAFF_PAGES


def sign_out(page):
    if page.request.method == "POST":
        page.sign_out()
        page.session.flash("U bent uitgelogd.")
        return page.redirect(SIGN_IN)
    return page.render("staff_sign_out.html")


# --- the queue -----------------------------------------------------------------------------

def waiting_words(declaration, today):
    """How long a request waits and whether it is overdue, for the queue and the request."""
    created = date.fromisoformat(declaration["createdAt"][:10])
    due = date.fromisoformat(declaration["decisionDueOn"])
    waited = (today - created).days
    late = (today - due).days
    overdue = declaration["status"] == "REQUESTED" and late > 0
    return {"days": waited, "due": due, "overdue": overdue, "days_late": late,
            "days_left": -late}


def queue(page):
    page.require_staff(*DESK)
    status = page.request.args.get("status") or "REQUESTED"
    if status not in QUEUE_STATUS_NAMES:
        status = "REQUESTED"
    after = page.request.args.get("na") or None
    try:
        found = page.graphql(operations.QUEUE, {
            "code": page.session["municipality"], "status": status,
            "first": QUEUE_PAGE_SIZE + 1, "after": after})["declarations"]
    except OperationRefused:   # a municipality the platform does not know (yet)
        return page.render("staff_queue.html", rows=[], shown=status, after=None,
                           next_after=None, overdue=0, status=400, errors={
                               "": "De aanvragen van uw gemeente kunnen we niet tonen: het "
                                   "platform kent uw gemeente niet. Neem contact op met uw "
                                   "beheerder."})
    more = len(found) > QUEUE_PAGE_SIZE
    found = found[:QUEUE_PAGE_SIZE]
    today = date.today()
    rows = [{**d, "waiting": waiting_words(d, today)} for d in found]
    return page.render("staff_queue.html", rows=rows, shown=status, after=after,
                       next_after=found[-1]["reference"] if more else None,
                       overdue=sum(1 for r in rows if r["waiting"]["overdue"]))


# --- one request ---------------------------------------------------------------------------

def _request(page, reference, query=operations.REQUEST_FOR_DECISION):
    """The request (by default with its applicant: a recorded read), or None when it is not
    this municipality's or not there."""
    return page.graphql_found(query, {"reference": reference}, "declaration",
                              {"NOT_FOUND", "FORBIDDEN"})


def _show(page, reference, form=None, status=200):
    found = _request(page, reference)
    if found is None:
        return not_found(page)
    form = form or Form({})
    return page.render("staff_request.html", declaration=found, form=form, errors=form.errors,
                       waiting=waiting_words(found, date.today()), status=status)


def request_page(page, reference):
    page.require_staff(*DESK)
    return _show(page, reference)


def _request_id(page, reference):
    """The id and status of the request, without its personal data (no read recorded);
    None when it is not this municipality's."""
    return _request(page, reference, operations.REQUEST_STATUS)


def _changing(page, reference):
    """For a form that changes a request: (its id and status, None), or (None, the answer
    instead: back to the request after a GET, the not-found page for another's)."""
    page.require_staff(*DESK)
    if page.request.method == "GET":
        return None, page.redirect(f"{HOME}/{reference}")
    target = _request_id(page, reference)
    return (target, None) if target else (None, not_found(page))


DECISIONS = {"afgeven": ("ISSUE", "Verklaring {reference} is afgegeven."),
             "afwijzen": ("REJECT", "Aanvraag {reference} is afgewezen."),
             "intrekken": (None, "Verklaring {reference} is ingetrokken.")}


def decide(page, reference):
    """Issue, reject (a reason is required) or revoke (a reason is required)."""
    target, instead = _changing(page, reference)
    if target is None:
        return instead
    action = page.form.get("actie")
    form = Form({"reden": page.form.get("reden")})
    if action not in DECISIONS:
        form.fail("", "Kies wat u met de aanvraag doet.")
        return _show(page, reference, form, status=400)
    decision, done = DECISIONS[action]
    reason = form.get("reden")
    if action in ("afwijzen", "intrekken") and not reason:
        form.fail("reden", "Vul de reden in. De aanvrager leest die in de besluitbrief."
                  if action == "afwijzen" else
                  "Vul de reden in waarom u de verklaring intrekt.")
        return _show(page, reference, form, status=400)
    try:
        if decision is None:
            page.graphql(operations.REVOKE, {"id": target["id"], "reason": reason})
        else:
            page.graphql(operations.DECIDE, {"id": target["id"], "decision": decision,
                                             "reason": reason or None})
    except OperationRefused as refusal:
        form.fail("reden" if "reason" in refusal.fields else "",
                  "Vul de reden in." if "reason" in refusal.fields else
                  "Dit lukte niet: de aanvraag is intussen veranderd. Bekijk hieronder hoe "
                  "het er nu mee staat." if "CONFLICT" in refusal.codes else
                  "Dit mag u niet doen met de rol waarmee u bent ingelogd.")
        return _show(page, reference, form, status=400 if "BAD_USER_INPUT" in refusal.codes
                     else 409)
    page.session.flash(done.format(reference=reference))
    return page.redirect(f"{HOME}/{reference}")


def renew_code(page, reference):
    target, instead = _changing(page, reference)
    if target is None:
        return instead
    try:
        page.graphql(operations.RENEW_VERIFICATION_CODE, {"id": target["id"]})
    except OperationRefused:
        page.session.flash("Een nieuwe controlecode maken lukte niet. Probeer het opnieuw.")
    else:
        page.session.flash(f"Verklaring {reference} heeft een nieuwe controlecode. De oude "
                           "code werkt niet meer.")
    return page.redirect(f"{HOME}/{reference}")


def decision_letter(page, reference):
    """The decision letter as PDF: for the municipality here, for the caregiver on their own
    pages (``views.decision_letter``)."""
    page.require_staff(*DESK)
    return letter_response(page, reference)


# --- the municipality's settings -------------------------------------------------------------

SETTINGS_FIELDS = {   # form field -> (input path, message when the platform refuses it)
    "maanden": ("input.minCareMonths", "Vul een aantal maanden in van 0 tot en met 120."),
    "uren": ("input.minHoursPerWeek", "Vul een aantal uren per week in van 0 tot en met 168, "
                                      "bijvoorbeeld 8 of 8,5."),
    "geldigheid": ("input.validityMonths", "Vul een aantal maanden in van 1 tot en met 120."),
    "doelen": ("input.purposes", "Kies ten minste één doel."),
}


def settings_page(page):
    """The municipality's criteria over the national defaults (a field left empty takes
    the national default)."""
    page.require_staff(*DESK)
    code = page.session["municipality"]
    if page.request.method == "GET":
        current = page.graphql(operations.DECLARATION_SETTINGS, {"code": code})["declarationSettings"]
        form = Form({"maanden": str(current["minCareMonths"]),
                     "uren": current["minHoursPerWeek"].replace(".", ","),
                     "geldigheid": str(current["validityMonths"])})
        return page.render("staff_settings.html", form=form, chosen=current["purposes"])
    form = Form({name: page.form.get(name) for name in ("maanden", "uren", "geldigheid")})
    chosen = page.form.getlist("doelen")
    chosen_input = {"minCareMonths": _whole(form, "maanden", "het aantal maanden zorg"),
                    "minHoursPerWeek": form.decimal("uren", "het aantal uren per week", "8",
                                                    required=False),
                    "validityMonths": _whole(form, "geldigheid", "hoe lang een verklaring geldt"),
                    "purposes": chosen or None}
    if not form.errors:
        try:
            page.graphql(operations.SET_SETTINGS, {"code": code, "input": chosen_input})
        except OperationRefused as refusal:
            form.refused(refusal, SETTINGS_FIELDS, "Opslaan lukte niet. Controleer de waarden.")
        else:
            page.session.flash("De instellingen zijn opgeslagen. Ze gelden voor nieuwe "
                               "aanvragen en besluiten.")
            return page.redirect(STAFF_PAGES + "/instellingen")
    return page.render("staff_settings.html", form=form, errors=form.errors, chosen=chosen,
                       status=400)


def _whole(form, name, what):
    """A whole number from the form, None when left empty (the national default)."""
    value = form.get(name)
    if not value:
        return None
    if not value.isdigit():
        form.fail(name, f"Vul {what} in als een heel getal, of laat het leeg.")
        return None
    return int(value)


# --- the campaigns that include the municipality ---------------------------------------------

def campaigns(page):
    page.require_staff(*DESK)
    code = page.session["municipality"]
    if page.request.method == "POST":
        try:
            left = page.graphql(operations.OPT_OUT, {"id": page.form.get("campagne", ""),
                                                     "code": code})["optOutOfCampaign"]
        except OperationRefused:
            page.session.flash("Afmelden lukte niet. U kunt uw gemeente alleen afmelden voor "
                               "een regionale campagne waar zij bij hoort.")
        else:
            page.session.flash(f"Uw gemeente doet niet mee aan {left['name']}.")
        return page.redirect(STAFF_PAGES + "/campagnes")
    found = page.graphql(operations.CAMPAIGNS)["campaigns"]
    return page.render("staff_campaigns.html", campaigns=found, code=code)


# --- the municipality's support points ------------------------------------------------------

POINTS = STAFF_PAGES + "/steunpunten"
POINT_FORM_FIELDS = {   # form field -> (input path, message when the platform refuses it)
    "naam": ("input.name", "Vul de naam van het steunpunt in."),
    "soort": ("input.kind", "Kies wat voor steunpunt het is."),
    "straat": ("input.address.street", "Vul de straat in."),
    "huisnummer": ("input.address.houseNumber", "Vul het huisnummer in."),
    "postcode": ("input.address.postcode", "Vul de postcode in zoals 1234 AB. Het platform "
                                           "moet de postcode kennen."),
    "plaats": ("input.address.city", "Vul de plaats in."),
    "telefoon": ("input.phone", "Vul een Nederlands telefoonnummer in, zoals 030-123 45 67, "
                                "of laat het leeg."),
    "email": ("input.email", "Vul een e-mailadres in zoals info@voorbeeld.nl, of laat het leeg."),
    "website": ("input.website", "Vul een webadres in dat begint met https://, of laat het "
                                 "leeg."),
    "hulp": ("input.areas", "Kies ten minste één soort hulp."),
}
CHANGED_MEANWHILE = ("Iemand anders heeft dit steunpunt gewijzigd nadat u het opende. Uw "
                     "wijzigingen zijn niet opgeslagen. Hieronder ziet u hoe het steunpunt nu "
                     "is opgeslagen; wat u invulde, staat nog in het formulier. Controleer het "
                     "en sla opnieuw op.")


def support_points(page):
    page.require_staff(*DESK)
    found = page.graphql(operations.OWN_SUPPORT_POINTS, {
        "code": page.session["municipality"], "after": page.request.args.get("na") or None})[
        "supportPoints"]
    return page.render("staff_support_points.html", points=found["items"],
                       total=found["total"], next_after=found["nextCursor"])


def _point_values(point):
    address = point["address"]
    return {"naam": point["name"], "soort": point["kind"], "straat": address["street"],
            "huisnummer": address["houseNumber"], "postcode": address["postcode"],
            "plaats": address["city"], "telefoon": point.get("phone") or "",
            "email": point.get("email") or "", "website": point.get("website") or ""}


def _point_input(page, form, areas):
    """The contract's SupportPointInput from the form (the seat: the own municipality)."""
    point = {"name": form.required("naam", "de naam van het steunpunt"),
             "kind": form.get("soort"), "municipalityCode": page.session["municipality"],
             "address": {"street": form.required("straat", "de straat"),
                         "houseNumber": form.required("huisnummer", "het huisnummer"),
                         "postcode": form.postcode("postcode", "de postcode"),
                         "city": form.required("plaats", "de plaats")},
             "phone": form.get("telefoon") or None, "email": form.get("email") or None,
             "website": form.get("website") or None, "areas": areas}
    if point["kind"] not in KIND_NAMES:
        form.fail("soort", "Kies wat voor steunpunt het is.")
    if not areas or any(area not in AREA_NAMES for area in areas):
        form.fail("hulp", "Kies ten minste één soort hulp.")
    return None if form.errors else point


def register_support_point(page):
    page.require_staff(*DESK)
    form = Form({name: page.form.get(name) for name in POINT_FORM_FIELDS if name != "hulp"})
    areas = page.form.getlist("hulp")
    if page.request.method == "POST":
        point = _point_input(page, form, areas)
        if point is not None:
            try:
                made = page.graphql(operations.REGISTER_SUPPORT_POINT,
                                    {"input": point})["registerSupportPoint"]
            except OperationRefused as refusal:
                form.refused(refusal, POINT_FORM_FIELDS, "Registreren lukte niet. Controleer "
                                                         "wat u heeft ingevuld.")
            else:
                page.session.flash(f"Steunpunt {made['name']} is geregistreerd.")
                return page.redirect(POINTS)
    return _point_page(page, form, areas, status=400 if form.errors else 200)


def support_point(page, point_id):
    """One of the municipality's support points: change it (with the version read when the
    form was opened: someone else's change meanwhile is explained, not overwritten), or
    deactivate it with a reason."""
    page.require_staff(*DESK)
    point = _own_point(page, point_id)
    if point is None:
        return not_found(page)
    if page.request.method == "GET":
        form = Form({**_point_values(point), "versie": str(point["version"])})
        return _point_page(page, form, point["areas"], point)
    form = Form({name: page.form.get(name) for name in (*POINT_FORM_FIELDS, "versie")
                 if name != "hulp"})
    areas = page.form.getlist("hulp")
    changes = _point_input(page, form, areas)
    version = form.get("versie")
    stored = None
    if changes is not None:
        try:
            page.graphql(operations.UPDATE_SUPPORT_POINT, {
                "id": point_id, "input": changes,
                "version": int(version) if version.isdigit() else point["version"]})
        except OperationRefused as refusal:
            if "CONFLICT" in refusal.codes:
                form.fail("", CHANGED_MEANWHILE)
                stored = point                       # what someone else saved
                form.values["versie"] = str(point["version"])   # saving again overwrites it
            else:
                form.refused(refusal, POINT_FORM_FIELDS, "Opslaan lukte niet. Controleer wat "
                                                         "u heeft ingevuld.")
        else:
            page.session.flash(f"Steunpunt {changes['name']} is gewijzigd.")
            return page.redirect(POINTS)
    return _point_page(page, form, areas, point, stored, status=409 if stored else 400)


def deactivate_support_point(page, point_id):
    page.require_staff(*DESK)
    if page.request.method == "GET":
        return page.redirect(f"{POINTS}/{point_id}")
    point = _own_point(page, point_id)
    if point is None:
        return not_found(page)
    form = Form({**_point_values(point), "versie": str(point["version"]),
                 "reden": page.form.get("reden")})
    if not form.required("reden", "de reden waarom het steunpunt stopt"):
        return _point_page(page, form, point["areas"], point, status=400)
    page.graphql(operations.DEACTIVATE_SUPPORT_POINT, {"id": point_id,
                                                       "reason": form.get("reden")})
    page.session.flash(f"Steunpunt {point['name']} is opgeheven.")
    return page.redirect(POINTS)


def _point_page(page, form, areas, point=None, stored=None, status=200):
    """The form of a support point: a new one (``point`` None) or one to change, with what
    is stored now when someone else changed it meanwhile (``stored``)."""
    return page.render("staff_support_point.html", form=form, errors=form.errors, areas=areas,
                       point=point, stored=stored, status=status)


def _own_point(page, point_id):
    """The support point when it is this municipality's, else None."""
    try:
        point = page.graphql(operations.SUPPORT_POINT, {"id": point_id})["supportPoint"]
    except OperationRefused:   # not an id at all
        return None
    if point is None or point["municipalityCode"] != page.session["municipality"]:
        return None
    return point


# --- information bags --------------------------------------------------------------------------

BAGS = STAFF_PAGES + "/informatietassen"
BAG_FORM_FIELDS = {
    "aantal": ("quantity", "Vul een aantal tassen in van 1 tot en met 100.000."),
    "voor": ("supportPointId", "Kies de gemeente zelf of een van haar steunpunten."),
    "bijlage": ("localInserts", "Schrijf ten hoogste 20 regels van ten hoogste 300 tekens."),
}


def bag_orders(page):
    """The municipality's orders of information bags and their state; a new order for itself
    or one of its support points; cancelling one with a reason."""
    page.require_staff(*DESK)
    code = page.session["municipality"]
    points = {p["id"]: p["name"] for p in page.graphql(operations.OWN_SUPPORT_POINTS, {
        "code": code, "after": None})["supportPoints"]["items"]}
    form = Form({name: page.form.get(name) for name in (*BAG_FORM_FIELDS, "reden")})
    if page.request.method == "POST" and page.form.get("actie") == "annuleren":
        if not form.get("reden"):
            form.fail("", "Vul bij de bestelling in waarom u die annuleert, en annuleer "
                          "opnieuw.")
        else:
            try:
                page.graphql(operations.CANCEL_BAG_ORDER, {"id": page.form.get("bestelling", ""),
                                                           "reason": form.get("reden")})
            except OperationRefused:
                form.fail("", "Annuleren lukte niet: de bestelling is al verzonden of "
                              "geannuleerd.")
            else:
                page.session.flash("De bestelling is geannuleerd.")
                return page.redirect(BAGS)
    elif page.request.method == "POST":
        quantity = form.required("aantal", "het aantal tassen")
        if quantity and not quantity.replace(".", "").isdigit():
            form.fail("aantal", "Vul het aantal tassen in als een heel getal, zoals 250.")
        point = form.get("voor") or None
        if point is not None and point not in points:
            form.fail("voor", "Kies de gemeente zelf of een van haar steunpunten.")
        lines = [line.strip() for line in form.get("bijlage").splitlines() if line.strip()]
        if not form.errors:
            try:
                page.graphql(operations.ORDER_BAGS, {
                    "code": code, "point": point, "quantity": int(quantity.replace(".", "")),
                    "lines": lines or None})
            except OperationRefused as refusal:
                form.refused(refusal, BAG_FORM_FIELDS, "Bestellen lukte niet. Controleer wat u "
                                                       "heeft ingevuld.")
            else:
                page.session.flash("Uw bestelling is ontvangen. Het campagneteam verdeelt de "
                                   "tassen; u ziet hieronder hoe het ermee staat.")
                return page.redirect(BAGS)
    orders = page.graphql(operations.BAG_ORDERS, {"code": code})["bagOrders"]
    orders.sort(key=lambda order: order["createdAt"], reverse=True)
    return page.render("staff_bag_orders.html", orders=orders, points=points, form=form,
                       errors=form.errors, status=400 if form.errors else 200)
