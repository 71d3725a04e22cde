"""The caregiver's messages, free of I/O: which event gives which message, its plain Dutch
text, the documents the service keeps (messages, the mail queue, the projection of
declarations' validity) and what leaves the service.

A message says what happened and where to read more; it never holds a BSN, an IBAN, the care
recipient's name, a verification code or a reason someone typed (a municipality's or the
fund's free text could hold any of those): the pages show the reason to whom may read it."""
import hashlib
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
          "september", "oktober", "november", "december")
SIGNATURE = "Met vriendelijke groet,\nMantelzorg — hulp voor wie zorgt"

# What the messages say about a declaration, by the status its event reports. EXPIRING is
# the service's own notice, EXPIRY_NOTICE_DAYS before the validity ends; EXPIRED gives no
# message (the notice came before), it only ends the projection.
DECLARATION_MESSAGES = {
    "ISSUED": (
        "Uw mantelzorgverklaring is afgegeven",
        "De gemeente heeft uw mantelzorgverklaring {reference} afgegeven. De verklaring is "
        "geldig tot en met {valid_until}.\n\nU kunt de verklaring bekijken en afdrukken op "
        "{site}/verklaringen"),
    "REJECTED": (
        "Uw aanvraag voor een mantelzorgverklaring is afgewezen",
        "De gemeente heeft uw aanvraag voor een mantelzorgverklaring ({reference}) afgewezen."
        "\n\nWaarom, leest u op {site}/verklaringen\n\nBent u het er niet mee eens? Neem dan "
        "contact op met uw gemeente."),
    "REVOKED": (
        "Uw mantelzorgverklaring is ingetrokken",
        "De gemeente heeft uw mantelzorgverklaring {reference} ingetrokken. U kunt de "
        "verklaring niet meer gebruiken.\n\nWaarom, leest u op {site}/verklaringen"),
    "EXPIRING": (
        "Uw mantelzorgverklaring verloopt binnenkort",
        "Uw mantelzorgverklaring {reference} is geldig tot en met {valid_until}. Daarna kunt "
        "u de verklaring niet meer gebruiken.\n\nZorgt u daarna nog voor iemand? Vraag dan "
        "op tijd een nieuwe verklaring aan op {site}/verklaringen/aanvragen"),
}

CLAIM_MESSAGES = {
    "ON_HOLD": (
        "Uw declaratie van reiskosten wacht",
        "Het reiskostenfonds heeft uw declaratie van {amount} (verklaring {reference}) nog "
        "niet goedgekeurd. {need}\n\nHoe het ermee staat, ziet u op {site}/reiskosten"),
    "APPROVED": (
        "Uw declaratie van reiskosten is goedgekeurd",
        "Het reiskostenfonds heeft uw declaratie van {amount} (verklaring {reference}) "
        "goedgekeurd. Het fonds maakt het bedrag binnenkort over.\n\nU ziet uw declaraties "
        "op {site}/reiskosten"),
    "REJECTED": (
        "Uw declaratie van reiskosten is afgewezen",
        "Het reiskostenfonds heeft uw declaratie van {amount} (verklaring {reference}) "
        "afgewezen.\n\nWaarom, leest u op {site}/reiskosten"),
    "PAID": (
        "Uw reiskosten zijn overgemaakt",
        "Het reiskostenfonds heeft {amount} overgemaakt voor uw declaratie (verklaring "
        "{reference}). Het bedrag staat binnen enkele werkdagen op uw rekening.\n\nU ziet uw "
        "declaraties op {site}/reiskosten"),
}

# What the fund needs before it decides on a claim on hold, by the hold the fund reports
# (travel_costs' ``claim_notice``).
HOLD_NEEDS = {
    "DISTANCE": "Het fonds kijkt eerst naar de afstand van uw ritten: die is langer dan we "
                "verwachten tussen de postcodes. Moest u omrijden? Bewaar dan wat dat laat "
                "zien, zoals een routebeschrijving. Het fonds neemt contact met u op als het "
                "iets van u nodig heeft.",
    "DECLARATION_REVOKED": "Uw mantelzorgverklaring is ingetrokken. Het fonds betaalt alleen "
                           "uit op een geldige mantelzorgverklaring.",
    "DECLARATION_EXPIRED": "Uw mantelzorgverklaring is verlopen. Het fonds betaalt alleen uit "
                           "op een geldige mantelzorgverklaring: vraag een nieuwe aan op "
                           "{site}/verklaringen/aanvragen",
}
UNKNOWN_NEED = "Het fonds bekijkt uw declaratie en neemt contact met u op als het iets van " \
               "u nodig heeft."

# Mail queue statuses: waiting to be sent (also after a failed try), sent, refused for good.
PENDING, SENT, PARKED = "PENDING", "SENT", "PARKED"


def day(value):
    """'2026-03-01' -> '1 maart 2026'."""
    when = value if isinstance(value, date) else date.fromisoformat(str(value))
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def euros(value):
    """'1234.5' -> '€ 1.234,50'."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return "het gevraagde bedrag"
    whole, cents = f"{amount:,.2f}".split(".")
    return f"€ {whole.replace(',', '.')},{cents}"


def _text(name, subject, body, site, **values):
    """The subject and the whole body: the greeting, what happened, the signature."""
    greeting = f"Beste {name}," if name else "Beste mantelzorger,"
    return subject, f"{greeting}\n\n{body.format(site=site, **values)}\n\n{SIGNATURE}\n"


# --- which event gives which message ----------------------------------------------------

def message_id(*parts):
    """A message's id, the same for the same occasion however often its event arrives: a
    declaration reaches each status once, so (declaration, status) names its message even
    when the declaration service republishes its events; a claim may be held more than once,
    so its event's id is part of the name."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def declaration_message(status, reference, valid_until, recipient, site):
    """(subject, body) for a declaration event's status, or None when it gives none."""
    if status not in DECLARATION_MESSAGES or status == "EXPIRED":
        return None
    subject, body = DECLARATION_MESSAGES[status]
    return _text(recipient.get("name"), subject, body, site, reference=reference,
                 valid_until=day(valid_until) if valid_until else "")


def claim_message(status, notice, recipient, site):
    """(subject, body) for a claim event's status, with ``notice`` as the fund told it."""
    subject, body = CLAIM_MESSAGES[status]
    need = HOLD_NEEDS.get(notice.get("hold"), UNKNOWN_NEED).format(site=site)
    return _text(recipient.get("name"), subject, body, site, need=need,
                 amount=euros(notice.get("amount_euros")),
                 reference=notice.get("declaration_reference", ""))


# --- documents the service keeps -----------------------------------------------------------

def new_message(message_key, owner, kind, about, subject, body, cipher, now):
    """A message in the owner's box: the text encrypted, bound to the message."""
    return {"_id": message_key, "owner": owner, "kind": kind, "about": about, "sent_at": now,
            "text": cipher.encrypt({"subject": subject, "body": body}, context=message_key)}


def mail_key(message_key):
    return f"{message_key}.mail"


def new_mail(message_key, owner, address, cipher, now):
    """The e-mail of a message, waiting to be sent: the address encrypted, bound to it."""
    key = mail_key(message_key)
    return {"_id": key, "message_id": message_key, "owner": owner, "status": PENDING,
            "to": cipher.encrypt(address, context=key), "attempts": 0, "due_at": now,
            "claimed_until": now, "created_at": now}


def retry_delay_seconds(attempts, first_ms, longest_ms):
    """The wait after the ``attempts``-th failed try: doubling from ``first_ms`` up to
    ``longest_ms``. A mail that could not be delivered for a passing reason is never given
    up; it is tried again at the longest delay for as long as it takes."""
    return min(first_ms * 2 ** max(attempts - 1, 0), longest_ms) / 1000


def declaration_projection(envelope, payload):
    """What the service keeps of a declaration to send its expiry notice in time. Ordered by
    the event's time, so a late ``issued`` never overwrites ``revoked``."""
    return {"_id": payload.id, "reference": payload.reference, "status": payload.status,
            "valid_until": payload.valid_until.isoformat() if payload.valid_until else None,
            "changed_at": envelope.occurred_at}


def expiry_notice_until(today, days):
    """Issued declarations whose validity ends on or before this day get their notice."""
    return (today + timedelta(days=days)).isoformat()


# --- what leaves the service -----------------------------------------------------------------

def message_view(message, cipher):
    text = cipher.decrypt(message["text"], context=message["_id"])
    return {"id": message["_id"], "sent_at": message["sent_at"].isoformat(),
            "subject": text["subject"], "body": text["body"], "about": message.get("about")}
