"""The caregiver's web session: one cookie, sealed with AES-GCM (``MANTELZORG_SESSION_KEY``),
so that its content — the BSN among it — is neither readable nor changeable in the browser.
Nothing is kept on the server: every gateway replica with the same key reads the cookie.

The session also holds the CSRF token that every form which changes something sends back."""
import hmac
import os
import secrets
import time

from common.crypto import session_cipher
from gateway.auth import ANONYMOUS, Principal

COOKIE_NAME = "mantelzorg_sessie"
CSRF_FIELD = "csrf_token"
# Signed out after this long without a page, and after this long in any case.
IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 3600
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
        return self.get("role") == "caregiver" and bool(self.get("bsn"))

    def principal(self):
        if not self.signed_in:
            return ANONYMOUS
        return Principal(sub=self["sub"], role="caregiver", bsn=self["bsn"])

    def sign_in(self, bsn, sub):
        """A fresh session for the caregiver: nothing of the anonymous one is kept (a new CSRF
        token too), so that a session planted before sign-in is worth nothing after it."""
        language = self.get("lang")
        self.clear()
        self.update(role="caregiver", bsn=bsn, sub=sub)
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
        if not isinstance(data, dict) or data.get("seen", 0) + IDLE_SECONDS < now \
                or data.get("since", now) + ABSOLUTE_SECONDS < now:
            return Session()
        session = Session(data)
        session.pop("seen", None)
        return session

    def dump(self, session):
        now = int(self.clock())
        data = {**session, "seen": now}
        if session.signed_in:
            data.setdefault("since", now)   # the sign-in's time, kept for the absolute limit
            session.setdefault("since", now)
        sealed = self._cipher().encrypt(data, SEAL_CONTEXT)
        return f"{sealed['kid']}.{sealed['nonce']}.{sealed['ct']}"


def cookie_is_secure(request, environ=os.environ):
    """``MANTELZORG_WEB_SECURE_COOKIE``: ``auto`` (default) marks the cookie Secure when the
    request came over HTTPS, directly or as a proxy says in X-Forwarded-Proto; ``true`` and
    ``false`` decide regardless."""
    setting = (environ.get("MANTELZORG_WEB_SECURE_COOKIE") or "auto").strip().lower()
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
                            max_age=IDLE_SECONDS if session else 0, path="/", httponly=True,
                            samesite="Lax", secure=cookie_is_secure(request))
    return response
