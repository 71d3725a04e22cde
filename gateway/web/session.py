"""The web session of a caregiver or a staff member: one cookie, sealed with AES-GCM
(``MANTELZORG_SESSION_KEY``), so that its content — the BSN among it — is neither readable
nor changeable in the browser. Every gateway replica with the same key reads the cookie.

A signed-in session also has a record on the server, in the gateway's database (a hash of
the session's random id, ``gateway/storage.py``): signing out removes it, so a copy of the
cookie taken before is refused by every replica afterwards, and a session idle for too long
ends on the server too.

The session also holds the CSRF token that every form which changes something sends back."""
import hashlib
import hmac
import secrets
import time

from common import config as settings
from common.crypto import session_cipher
from gateway.auth import ANONYMOUS, Principal

COOKIE_NAME = "mantelzorg_sessie"
CSRF_FIELD = "csrf_token"
# Signed out after this long without a page (a staff member sooner), and after this long in
# any case.
IDLE_SECONDS = 30 * 60
STAFF_IDLE_SECONDS = 15 * 60
ABSOLUTE_SECONDS = 12 * 3600
STAFF_ROLES = ("municipality", "fund", "campaign", "support_point", "partner", "admin")
# The sealing binds this to the ciphertext: a value sealed for another use does not open here.
SEAL_CONTEXT = "web-session"


class Session(dict):
    """What the cookie carries. ``changed`` says whether the cookie must be written again."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed = False

    def set(self, key, value):
        if self.get(key) != value:
            self[key] = value
            self.changed = True

    def drop(self, key):
        if key in self:
            del self[key]
            self.changed = True

    def csrf_token(self):
        if not self.get("csrf"):
            self.set("csrf", secrets.token_urlsafe(32))
        return self["csrf"]

    def csrf_valid(self, sent):
        expected = self.get("csrf")
        return bool(expected and sent) and hmac.compare_digest(str(expected), str(sent))

    @property
    def signed_in(self):
        """A caregiver is signed in."""
        return self.get("role") == "caregiver" and bool(self.get("bsn"))

    @property
    def staff(self):
        """A staff member is signed in."""
        return self.get("role") in STAFF_ROLES and bool(self.get("sub"))

    @property
    def session_id(self):
        return self.get("sid")

    @property
    def idle_seconds(self):
        return STAFF_IDLE_SECONDS if self.staff else IDLE_SECONDS

    def principal(self):
        """Whom the pages run the contract's operations as: the same checks as for a client
        with a token of this role and organisation."""
        if self.signed_in:
            return Principal(sub=self["sub"], role="caregiver", bsn=self["bsn"])
        if self.staff:
            return Principal(sub=self["sub"], role=self["role"],
                             municipality=self.get("municipality"),
                             support_point=self.get("support_point"))
        return ANONYMOUS

    def sign_in(self, bsn, sub):
        """A fresh session for the caregiver: nothing of the anonymous one is kept (a new CSRF
        token too), so that a session planted before sign-in is worth nothing after it."""
        self._fresh(role="caregiver", bsn=bsn, sub=sub)

    def sign_in_staff(self, role, sub, municipality=None, support_point=None, name=""):
        """A fresh session for a staff member of an organisation (see ``sign_in``)."""
        self._fresh(role=role, sub=sub, municipality=municipality, support_point=support_point,
                    name=name)

    def _fresh(self, **identity):
        language = self.get("lang")
        self.clear()
        self.update(identity, sid=secrets.token_urlsafe(32))
        if language:
            self["lang"] = language
        self.changed = True

    def sign_out(self):
        language = self.get("lang")
        self.clear()
        if language:
            self["lang"] = language
        self.changed = True

    def flash(self, message):
        """A message for the next page (after a redirect)."""
        self.set("flash", message)

    def take_flash(self):
        message = self.get("flash")
        self.drop("flash")
        return message


class SessionCodec:
    """Cookie text <-> Session. An unreadable, foreign or expired cookie is an empty session."""

    def __init__(self, cipher=None, clock=time.time):
        self.cipher = cipher
        self.clock = clock

    def _cipher(self):
        if self.cipher is None:   # loaded on first use: the key may live in the data folder
            self.cipher = session_cipher()
        return self.cipher

    def load(self, text):
        if not text:
            return Session()
        try:
            kid, nonce, sealed = text.split(".")
            data = self._cipher().decrypt({"kid": kid, "nonce": nonce, "ct": sealed},
                                          SEAL_CONTEXT)
        except Exception:   # tampered, another key, or not ours: start afresh
            return Session()
        now = self.clock()
        if not isinstance(data, dict):
            return Session()
        session = Session(data)
        seen = session.pop("seen", 0)
        if seen + session.idle_seconds < now or data.get("since", now) + ABSOLUTE_SECONDS < now:
            return Session()
        return session

    def dump(self, session):
        now = int(self.clock())
        data = {**session, "seen": now}
        if session.signed_in or session.staff:
            data.setdefault("since", now)   # the sign-in's time, kept for the absolute limit
            session.setdefault("since", now)
        sealed = self._cipher().encrypt(data, SEAL_CONTEXT)
        return f"{sealed['kid']}.{sealed['nonce']}.{sealed['ct']}"


def record_id(session_id):
    """How the server keeps a session's id: its hash, never the id itself."""
    return hashlib.sha256(f"web-session:{session_id}".encode()).hexdigest()


class SessionRecords:
    """The server's side of the signed-in sessions, in the gateway's database (the store's
    ``open_session``, ``touch_session`` and ``end_session``), shared by every replica."""

    def __init__(self, store, clock=time.time):
        self.store = store
        self.clock = clock

    def open(self, session):
        if session.session_id:
            self.store.open_session(record_id(session.session_id), self.clock())

    def still_open(self, session):
        """Whether the server still holds the signed-in session, seen within its idle time
        (and marks it seen now). A session without an id is not signed in."""
        if not session.session_id:
            return False
        now = self.clock()
        return self.store.touch_session(record_id(session.session_id),
                                        now - session.idle_seconds, now)

    def end(self, session):
        if session.session_id:
            self.store.end_session(record_id(session.session_id))


def cookie_is_secure(request, environ=None):
    """``MANTELZORG_WEB_SECURE_COOKIE``: ``auto`` (default) marks the cookie Secure when the
    request came over HTTPS, directly or as a proxy says in X-Forwarded-Proto; ``true`` and
    ``false`` decide regardless."""
    setting = str(settings.setting(None, "MANTELZORG_WEB_SECURE_COOKIE", "auto",
                                   environ=environ)).lower()
    if setting in ("true", "1", "yes"):
        return True
    if setting in ("false", "0", "no"):
        return False
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


def new_subject():
    """The subject the services see for a caregiver signed in without an identity provider's
    own subject: random per sign-in, never derived from the BSN (ownership goes by the BSN)."""
    return "caregiver-" + secrets.token_urlsafe(12)


def store_cookie(response, request, session, codec):
    if session or request.cookies.get(COOKIE_NAME):
        response.set_cookie(COOKIE_NAME, codec.dump(session) if session else "",
                            max_age=session.idle_seconds if session else 0, path="/",
                            httponly=True,
                            samesite="Lax", secure=cookie_is_secure(request))
    return response
