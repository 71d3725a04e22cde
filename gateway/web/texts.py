"""Plain Dutch names of the contract's values, and how the pages write dates and amounts."""
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from gateway.printable import MONTHS, PURPOSE_NAMES

DUTCH_TIME = ZoneInfo("Europe/Amsterdam")
AREA_NAMES = {
    "INFORMATION": "Informatie",
    "ADVICE_AND_GUIDANCE": "Advies en begeleiding",
    "EMOTIONAL_SUPPORT": "Emotionele steun",
    "EDUCATION": "Scholing en training",
    "PRACTICAL_HELP": "Praktische hulp",
    "RESPITE_CARE": "Respijtzorg (de zorg even overdragen)",
    "FINANCIAL_SUPPORT": "Financiële steun",
    "MATERIAL_SUPPORT": "Materiële steun",
}

KIND_NAMES = {"LOCAL": "Lokaal", "REGIONAL": "Regionaal", "NATIONAL": "Landelijk"}

DECLARATION_STATUS_NAMES = {
    "REQUESTED": "Aangevraagd, de gemeente beoordeelt uw aanvraag",
    "ISSUED": "Afgegeven",
    "REJECTED": "Afgewezen",
    "REVOKED": "Ingetrokken",
    "EXPIRED": "Verlopen",
}

CLAIM_STATUS_NAMES = {
    "SUBMITTED": "Ingediend",
    "ON_HOLD": "In behandeling, er is iets nagevraagd",
    "APPROVED": "Goedgekeurd",
    "REJECTED": "Afgewezen",
    "PAID": "Uitbetaald",
}

MODE_NAMES = {"CAR": "Auto", "PUBLIC_TRANSPORT": "Openbaar vervoer", "BICYCLE": "Fiets",
              "TAXI": "Taxi"}

# Sent as the contract's ``relationship`` (English words), shown in Dutch.
RELATIONSHIP_NAMES = {
    "partner": "Partner",
    "parent": "Vader of moeder",
    "child": "Kind",
    "sibling": "Broer of zus",
    "other family": "Ander familielid",
    "friend": "Vriend of vriendin",
    "neighbour": "Buur",
    "other": "Iemand anders",
}


# The staff roles as the sign-in form and the header name them.
ROLE_NAMES = {
    "municipality": "Gemeente",
    "fund": "Reiskostenfonds",
    "campaign": "Campagneteam",
    "support_point": "Steunpunt mantelzorg",
    "partner": "Partnerorganisatie",
    "admin": "Beheer",
}

# Who made a step of a declaration's history.
ACTOR_NAMES = {**ROLE_NAMES, "caregiver": "Mantelzorger", "system": "Het platform"}

# A municipality's desk: the statuses as a filter names them.
QUEUE_STATUS_NAMES = {
    "REQUESTED": "Wachten op besluit",
    "ISSUED": "Afgegeven",
    "REJECTED": "Afgewezen",
    "REVOKED": "Ingetrokken",
    "EXPIRED": "Verlopen",
}

BAG_ORDER_STATUS_NAMES = {
    "REQUESTED": "Besteld, wacht op verdeling",
    "ALLOCATED": "Toegewezen, wordt verzonden",
    "SHIPPED": "Verzonden",
    "DELIVERED": "Bezorgd",
    "CANCELLED": "Geannuleerd",
}

CRITERIA_NAMES = {
    "CARE_DURATION": "Zorgt nog niet lang genoeg (korter dan de gemeente vraagt)",
    "HOURS_PER_WEEK": "Zorgt minder uren per week dan de gemeente vraagt",
}

ACTION_NAMES = {
    "request": "Aangevraagd", "issue": "Verklaring afgegeven", "reject": "Afgewezen",
    "revoke": "Ingetrokken", "expire": "Verlopen", "renew_code": "Nieuwe controlecode",
}


def organisation_name(staff):
    """Which organisation a signed-in staff member works for, in words."""
    role = staff.get("role")
    if role == "municipality":
        return f"gemeente {staff.get('municipality')}"
    if role == "support_point":
        return f"steunpunt {staff.get('support_point')}"
    return ROLE_NAMES.get(role, role or "").lower()


def moment(value):
    """'2026-03-01T09:05:00+00:00' -> '1 maart 2026, 10:05' (Dutch time)."""
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "")
    when = when.astimezone(DUTCH_TIME)
    return f"{day(when.date())}, {when:%H:%M}"


def day(value):
    """'2026-03-01' -> '1 maart 2026'; anything else as it is."""
    if not value:
        return ""
    try:
        when = value if isinstance(value, date) else datetime.fromisoformat(str(value)).date()
    except ValueError:
        return str(value)
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def euros(value):
    """'1234.5' -> '€ 1.234,50'."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(value or "")
    whole, cents = f"{amount:,.2f}".split(".")
    return f"€ {whole.replace(',', '.')},{cents}"


def number(value):
    """'12.5' -> '12,5'."""
    return str(value or "").replace(".", ",")


_ADDRESS = re.compile(r"https?://[^\s<>\"']+")


def paragraphs(text):
    """A message's body as its paragraphs (separated by an empty line)."""
    return [part.strip("\n") for part in str(text or "").split("\n\n") if part.strip()]


def linked(text):
    """Plain text as HTML: escaped, its line breaks kept and every web address a link."""
    html, end = [], 0
    for match in _ADDRESS.finditer(text):
        address = match.group().rstrip(".,;:")
        html.append(escape(text[end:match.start()]))
        html.append(Markup('<a class="utrecht-link" href="{0}">{0}</a>').format(address))
        end = match.start() + len(address)
    html.append(escape(text[end:]))
    return Markup("<br>\n").join(Markup("").join(html).split("\n"))


def sentence(text):
    """The first letter a capital, the rest as it is ('gemeente GM0344' -> 'Gemeente GM0344')."""
    text = str(text or "")
    return text[:1].upper() + text[1:]


FILTERS = {"day": day, "euros": euros, "number": number, "moment": moment,
           "sentence": sentence, "paragraphs": paragraphs, "linked": linked}
GLOBALS = {
    "AREA_NAMES": AREA_NAMES, "KIND_NAMES": KIND_NAMES, "PURPOSE_NAMES": PURPOSE_NAMES,
    "DECLARATION_STATUS_NAMES": DECLARATION_STATUS_NAMES,
    "CLAIM_STATUS_NAMES": CLAIM_STATUS_NAMES, "MODE_NAMES": MODE_NAMES,
    "RELATIONSHIP_NAMES": RELATIONSHIP_NAMES, "ROLE_NAMES": ROLE_NAMES, "ACTOR_NAMES": ACTOR_NAMES,
    "QUEUE_STATUS_NAMES": QUEUE_STATUS_NAMES, "CRITERIA_NAMES": CRITERIA_NAMES,
    "ACTION_NAMES": ACTION_NAMES, "BAG_ORDER_STATUS_NAMES": BAG_ORDER_STATUS_NAMES, "organisation_name": organisation_name,
}
