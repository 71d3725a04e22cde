"""What every page shares: the session, the GraphQL call as the signed-in caregiver, CSRF,
templates, and the answer's security headers. A page never shows a stack trace: a service
that does not answer gives a calm page that says what to do."""
from pathlib import Path
from urllib.parse import quote

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko.extensions import DependencyProvider
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from common.logging import CORRELATION_HEADER, CORRELATION_KEY, get_logger
from common.storage import Storage
from gateway.executor import run_query
from gateway.web import texts
from gateway.web.reasons import claim_reasons
from gateway.web.session import (COOKIE_NAME, CSRF_FIELD, Session, SessionCodec, SessionRecords,
                                 store_cookie)

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024
# No script at all on the caregiver pages, no asset or form target of another origin.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                           "font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Pages show personal data: no copy in a shared cache or the browser's back-forward store.
    "Cache-Control": "no-store",
}

log = get_logger()
templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(),
                        trim_blocks=True, lstrip_blocks=True)
templates.filters.update(texts.FILTERS)
# the fund's reasons, for the caregiver (the desk's views call claim_reasons themselves)
templates.filters["reasons_in_dutch"] = lambda reason: claim_reasons(reason, caregiver=True)
templates.globals.update(texts.GLOBALS)
codec = SessionCodec()


STAFF_PAGES = "/medewerkers"
# A partner's desk checks declarations here, signed in on the staff sign-in.
PARTNER_PAGES = "/controleren"


def staff_path(path):
    """Whether ``path`` is one of the staff pages (the header and sign-in are the staff's)."""
    return any(path == base or path.startswith(base + "/")
               for base in (STAFF_PAGES, PARTNER_PAGES))


templates.globals["staff_path"] = staff_path


class WebSessions(DependencyProvider):
    """Injects the server's records of the signed-in sessions (SessionRecords), kept in the
    gateway's database."""

    def get_dependency(self, worker_ctx):
        storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
        return SessionRecords(storage.store)


class SignInNeeded(Exception):
    """The page is for a signed-in caregiver (or, under /medewerkers, staff member)."""


class NotYourPage(Exception):
    """A signed-in staff member on a page of another role: the refusal page."""


class ServiceDown(Exception):
    """A service did not answer (or failed): the calm page."""


class OperationRefused(Exception):
    """The operation answered errors a caregiver can act on (input, not allowed, conflict)."""

    def __init__(self, errors):
        super().__init__("operation refused")
        self.errors = errors

    @property
    def codes(self):
        return {e.get("extensions", {}).get("code") for e in self.errors}

    @property
    def fields(self):
        """The input paths named by BAD_USER_INPUT errors: ``input.trips.0.distanceKm``."""
        return [e["extensions"]["field"] for e in self.errors
                if e.get("extensions", {}).get("code") == "BAD_USER_INPUT"
                and e["extensions"].get("field")]


class Page:
    """One request to one page."""

    def __init__(self, service, request):
        self.service = service
        self.request = request
        self.records = service.web_sessions
        self.session = codec.load(request.cookies.get(COOKIE_NAME))
        if (self.session.signed_in or self.session.staff) \
                and not self.records.still_open(self.session):
            # signed out (on any replica), or idle too long: the cookie is worth nothing
            self.session = Session()
            self.session.changed = True

    @property
    def for_staff(self):
        return staff_path(self.request.path)

    def sign_in(self, **identity):
        """A new signed-in session (a caregiver's ``bsn`` and ``sub``, or a staff member's
        ``role``, ``sub``, organisation and ``name``), recorded on the server; a session
        signed in before in this browser ends."""
        self.records.end(self.session)
        if "bsn" in identity:
            self.session.sign_in(**identity)
        else:
            self.session.sign_in_staff(**identity)
        self.records.open(self.session)

    def sign_out(self):
        self.records.end(self.session)
        self.session.sign_out()

    @property
    def form(self):
        return self.request.form

    @property
    def signed_in(self):
        return self.session.signed_in

    def require_sign_in(self):
        if not self.signed_in:
            raise SignInNeeded()

    def require_staff(self, *roles):
        """The page is for staff of one of ``roles``: anyone not signed in as staff is sent to
        the staff sign-in, a staff member of another role gets the refusal page."""
        if not self.session.staff:
            raise SignInNeeded()
        if self.session["role"] not in roles:
            raise NotYourPage()

    def context(self):
        """The GraphQL context of any other client, with the session's caregiver."""
        return self.service.graphql_context(self.session.principal())

    def graphql(self, query, variables=None):
        """The data of a contract operation run as the page's caregiver (or anonymously)."""
        answer = run_query({"query": query, "variables": variables or {}}, self.context())
        errors = answer.get("errors") or []
        codes = {e.get("extensions", {}).get("code") for e in errors}
        if "UNAUTHENTICATED" in codes:
            raise SignInNeeded()
        if codes & {"UNAVAILABLE", "INTERNAL"}:
            raise ServiceDown()
        if errors:
            raise OperationRefused(errors)
        return answer["data"]

    def graphql_found(self, query, variables, field, missing):
        """``field`` of the operation's data, or None when every error's code is one of
        ``missing`` (the codes that say it is not there for this caller)."""
        try:
            return self.graphql(query, variables)[field]
        except OperationRefused as refusal:
            if refusal.codes <= missing:
                return None
            raise

    def render(self, template, status=200, **values):
        values.setdefault("errors", {})
        html = templates.get_template(template).render(
            page=self, csrf_token=self.session.csrf_token(), csrf_field=CSRF_FIELD,
            signed_in=self.signed_in, staff=self.session if self.session.staff else None,
            path=self.request.path,
            flash=self.session.take_flash(), **values)
        return Response(html, status=status, mimetype="text/html")

    def redirect(self, location):
        return Response("", status=303, headers={"Location": location})


def serve(service, request, view, *args):
    """Runs a page's view with the session, CSRF check and error pages around it."""
    request.max_content_length = MAX_FORM_BYTES
    page = Page(service, request)
    try:
        if request.method == "POST" and not page.session.csrf_valid(request.form.get(CSRF_FIELD)):
            response = page.render("refused.html", status=403)
        else:
            response = view(page, *args)
    except SignInNeeded:
        # Back to the same page after signing in; a form's page again, not its POST.
        back = request.full_path.rstrip("?") if request.method == "GET" else request.path
        sign_in = STAFF_PAGES + "/inloggen" if page.for_staff else "/inloggen"
        response = page.redirect(f"{sign_in}?volgende=" + quote(back))
    except NotYourPage:
        response = page.render("staff_not_yours.html", status=403)
    except RequestEntityTooLarge:
        response = page.render("refused.html", status=413)
    except ServiceDown:
        response = page.render("unavailable.html", status=503)
    except Exception as error:   # never a stack trace: the calm page, and the error logged
        log.error("web.page_failed", error=type(error).__name__, page=request.path,
                  exc_info=True)
        response = page.render("unavailable.html", status=500)
    store_cookie(response, request, page.session, codec)
    response.headers.update(SECURITY_HEADERS)
    response.headers[CORRELATION_HEADER] = structlog.contextvars.get_contextvars().get(
        CORRELATION_KEY, "")
    return response
