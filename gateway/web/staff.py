"""The staff pages under /medewerkers: signing in for an organisation, and the municipality's
desk — the queue of requests waiting for a decision, one request with its applicant, and the
decision (issue, reject with a reason, revoke with a reason, renew the code, the decision
letter). Every change and every read goes through a contract operation as the signed-in
employee, with the same checks as for any client."""
import hashlib
from datetime import date

from common import config as settings
from gateway.web import operations, signin
from gateway.web.app import STAFF_PAGES, OperationRefused
from gateway.web.forms import Form
from gateway.web.texts import QUEUE_STATUS_NAMES, ROLE_NAMES, STAFF_MENUS
from gateway.web.views import _next_page, complete_sign_in, letter_response, not_found

HOME = signin.STAFF_HOME
SIGN_IN = STAFF_PAGES + "/inloggen"
QUEUE_PAGE_SIZE = 20
DESK = ("municipality",)   # who works the desk of declaration requests


def _staff_next_page(value):
    """Only a staff page of this site (see ``views._next_page``)."""
    chosen = _next_page(value)
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
    provider = signin.staff_identity_provider()
    next_page = _staff_next_page(page.request.values.get("volgende"))
    posted = page.request.method == "POST"
    form = Form({name: page.form.get(name) for name in ("rol", "organisatie", "naam")}
                if posted else {})
    if posted:
        # The development form is off when an identity provider is set, and always in
        # production.
        if provider or settings.is_production():
            return page.render("refused.html", status=403)
        role = form.get("rol")
        if role not in ROLE_NAMES:
            form.fail("rol", "Kies uw rol.")
        organisation = form.get("organisatie")
        if role in ("municipality", "support_point") and not organisation:
            form.fail("organisatie", "Vul de CBS-code van uw gemeente in (zoals GM0363) of "
                                     "het nummer van uw steunpunt.")
        name = form.required("naam", "uw naam")
        if not form.errors:
            identity = signin.staff_identity(
                role, organisation if role == "municipality" else None,
                organisation if role == "support_point" else None, name,
                development_subject(role, organisation, name))
            if identity is None:
                form.fail("organisatie", "Vul de CBS-code van uw gemeente in zoals GM0363.")
            else:
                page.sign_in(**identity)
                page.session.flash("U bent ingelogd.")
                return page.redirect(next_page if next_page != HOME or role in DESK
                                     else STAFF_PAGES)
    return page.render("staff_sign_in.html", form=form, errors=form.errors, provider=provider,
                       next_page=next_page, development=not settings.is_production(),
                       status=400 if form.errors else 200)


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
    return complete_sign_in(page, provider.complete_staff, "staff_sign_in.html", provider, HOME)


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
    return {"days": waited, "due": due, "overdue": declaration["status"] == "REQUESTED" and late > 0,
            "days_late": late, "days_left": -late}


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
    try:
        return page.graphql(query, {"reference": reference})["declaration"]
    except OperationRefused as refusal:
        if refusal.codes <= {"NOT_FOUND", "FORBIDDEN"}:
            return None
        raise


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
