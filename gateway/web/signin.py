"""Signing in with an identity provider: OpenID Connect's authorization code flow with PKCE,
through Authlib, the ID token checked with joserfc. Caregivers sign in at the provider that
offers DigiD; staff of municipalities and national organisations at their organisation's
own provider, with client settings of its own.

Settings (read through ``common.config``, from the environment). For caregivers, with none
of them the development sign-in (a BSN field) is used, in development only: with
``MANTELZORG_ENV=production`` the gateway does not start without them (and without
``MANTELZORG_SESSION_KEY``):

| variable | meaning |
|---|---|
| ``MANTELZORG_OIDC_ISSUER`` | the provider's issuer; its discovery document is read from ``<issuer>/.well-known/openid-configuration`` |
| ``MANTELZORG_OIDC_METADATA_URL`` | instead: the discovery document's own address |
| ``MANTELZORG_OIDC_CLIENT_ID``, ``MANTELZORG_OIDC_CLIENT_SECRET`` | this gateway's client registration |
| ``MANTELZORG_OIDC_REDIRECT_URL`` | where the provider sends the caregiver back: ``https://<host>/inloggen/terug`` |
| ``MANTELZORG_OIDC_BSN_CLAIM`` | the ID token claim with the BSN (default ``bsn``) |
| ``MANTELZORG_OIDC_SCOPE`` | scopes asked for (default ``openid``) |

Staff: the same settings named ``MANTELZORG_STAFF_OIDC_*`` (the redirect address
``https://<host>/medewerkers/inloggen/terug``), and which claims say who signs in:
``MANTELZORG_STAFF_OIDC_ROLE_CLAIM`` (default ``role``), ``..._MUNICIPALITY_CLAIM``
(``municipality``), ``..._SUPPORT_POINT_CLAIM`` (``support_point``) and ``..._NAME_CLAIM``
(``name``). Without them the staff pages offer the development form (role, organisation,
name), in development only.
"""
import hmac
import threading
import time
from urllib.parse import unquote, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from nameko.extensions import DependencyProvider

from common import config as settings
from common.crypto import session_cipher
from common.logging import get_logger
from common.validators import MUNICIPALITY_CODE, validate_bsn
from gateway.web.session import new_subject

METADATA_MAX_AGE_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 10
DEFAULT_NEXT_PATH = "/verklaringen"
MAX_NEXT_PATH_CHARS = 2000
log = get_logger()


def safe_next_path(value, default=DEFAULT_NEXT_PATH):
    """``value`` when it is a path of this site, else ``default``: where to go after signing
    in (``volgende``), never another site (an open redirect). A path starts with one slash
    and has no scheme, host, backslash or control character (browsers drop tabs and line
    breaks, so ``/<tab>/evil.example`` would become ``//evil.example``), also once and twice
    percent-decoded (``/%2F/evil.example``)."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT_PATH_CHARS:
        return default
    candidate = value
    for _ in range(3):
        if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
            return default
        if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in candidate):
            return default
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return default
        decoded = unquote(candidate)
        if decoded == candidate:
            return value
        candidate = decoded
    return default


class SignInFailed(Exception):
    """Signing in did not succeed; ``message`` says so to the caregiver in plain Dutch."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


ABORTED = ("Inloggen is niet gelukt of is afgebroken. Probeer het opnieuw via de knop "
           "hieronder.")


CAREGIVERS, STAFF = "MANTELZORG_OIDC", "MANTELZORG_STAFF_OIDC"
# The settings that tell one client registration from another (its cache key).
_IDENTITY = ("ISSUER", "METADATA_URL", "CLIENT_ID", "REDIRECT_URL", "BSN_CLAIM", "ROLE_CLAIM",
             "MUNICIPALITY_CLAIM", "SUPPORT_POINT_CLAIM", "NAME_CLAIM")


def _setting(prefix, name, environ, default=""):
    return settings.setting(None, f"{prefix}_{name}", default, environ=environ)


class IdentityProvider:
    def __init__(self, environ=None, prefix=CAREGIVERS):
        def read(name, default=""):
            return _setting(prefix, name, environ, default)

        issuer = read("ISSUER").rstrip("/")
        self.metadata_url = read("METADATA_URL") or f"{issuer}/.well-known/openid-configuration"
        self.client_id = read("CLIENT_ID")
        self.client_secret = read("CLIENT_SECRET")
        self.redirect_url = read("REDIRECT_URL")
        self.scope = read("SCOPE", "openid")
        self.bsn_claim = read("BSN_CLAIM", "bsn")
        self.claims = {name: read(f"{name.upper()}_CLAIM", name)
                       for name in ("role", "municipality", "support_point", "name")}
        self._metadata = None
        self._keys = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def _client(self):
        return OAuth2Session(self.client_id, self.client_secret, scope=self.scope,
                             redirect_uri=self.redirect_url, code_challenge_method="S256")

    def metadata(self):
        with self._lock:
            if self._metadata is None or time.monotonic() - self._read_at > METADATA_MAX_AGE_SECONDS:
                document = requests.get(self.metadata_url, timeout=HTTP_TIMEOUT_SECONDS)
                document.raise_for_status()
                metadata = document.json()
                keys = requests.get(metadata["jwks_uri"], timeout=HTTP_TIMEOUT_SECONDS)
                keys.raise_for_status()
                self._metadata, self._keys = metadata, KeySet.import_key_set(keys.json())
                self._read_at = time.monotonic()
            return self._metadata

    def authorization_redirect(self, session, next_page):
        """The provider's login address; what the callback needs is kept in the session."""
        pending = {"state": generate_token(32), "nonce": generate_token(32),
                   "verifier": generate_token(64), "next": next_page}
        url, _ = self._client().create_authorization_url(
            self.metadata()["authorization_endpoint"], state=pending["state"],
            nonce=pending["nonce"], code_verifier=pending["verifier"])
        session.set("oidc", pending)
        return url

    def complete(self, session, answer):
        """The caregiver's identity from the provider's answer: ``{"bsn", "sub", "next"}``."""
        claims, next_page = self.verified_claims(session, answer)
        try:
            bsn = validate_bsn(str(claims.get(self.bsn_claim) or ""))
        except ValueError:
            raise SignInFailed("Uw burgerservicenummer kwam niet mee bij het inloggen. "
                               "Probeer het later opnieuw.") from None
        subject = str(claims["sub"])
        if bsn in subject:   # a provider that uses the BSN as subject: never pass it on
            subject = new_subject()
        return {"bsn": bsn, "sub": subject, "next": next_page or "/verklaringen"}

    def complete_staff(self, session, answer):
        """A staff member's identity from the provider's answer: ``{"role", "municipality",
        "support_point", "name", "sub", "next"}``, from the configured claims; refused when
        the role is none of the staff roles or the organisation does not fit it."""
        claims, next_page = self.verified_claims(session, answer)
        identity = staff_identity(claims.get(self.claims["role"]),
                                  claims.get(self.claims["municipality"]),
                                  claims.get(self.claims["support_point"]),
                                  claims.get(self.claims["name"]), str(claims["sub"]))
        if identity is None:
            raise SignInFailed(STAFF_REFUSED)
        return {**identity, "next": next_page or STAFF_HOME}

    def verified_claims(self, session, answer):
        """The ID token's checked claims, and the page to go to afterwards."""
        pending = session.get("oidc") or {}
        session.drop("oidc")   # one use only
        if not pending or not hmac.compare_digest(str(answer.get("state") or ""),
                                                  pending["state"]):
            raise SignInFailed(ABORTED)
        if answer.get("error") or not answer.get("code"):
            raise SignInFailed(ABORTED)
        metadata = self.metadata()
        try:
            token = self._client().fetch_token(
                metadata["token_endpoint"], grant_type="authorization_code",
                code=answer["code"], code_verifier=pending["verifier"],
                timeout=HTTP_TIMEOUT_SECONDS)
            claims = self._id_token_claims(token.get("id_token") or "", metadata, pending)
        except (AuthlibBaseError, JoseError, ValueError, KeyError,
                requests.RequestException) as error:
            # A refused code, a bad signature, another audience or nonce, a provider down.
            log.warning("web.sign_in_refused", error=type(error).__name__)
            raise SignInFailed(ABORTED) from None
        return claims, safe_next_path(pending.get("next"), default=None)

    def _id_token_claims(self, id_token, metadata, pending):
        token = jwt.decode(id_token, self._keys, algorithms=["RS256", "ES256", "PS256"])
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": self.client_id},
            nonce={"essential": True, "value": pending["nonce"]},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(token.claims)
        return token.claims


STAFF_HOME = "/medewerkers/aanvragen"
STAFF_ROLES = ("municipality", "fund", "campaign", "support_point", "partner", "admin")
STAFF_REFUSED = ("U kunt hier niet inloggen: uw organisatie gaf geen rol of organisatie "
                 "mee die bij deze pagina's past. Neem contact op met uw beheerder.")


def staff_identity(role, municipality, support_point, name, sub):
    """Who signs in on the staff pages, or None when the role is not a staff role or its
    organisation is missing or malformed (a municipality's CBS code, a support point's id)."""
    if role not in STAFF_ROLES or not isinstance(sub, str) or not sub.strip():
        return None
    identity = {"role": role, "sub": sub.strip(), "municipality": None, "support_point": None,
                "name": (name.strip() if isinstance(name, str) else "")[:100]}
    if role == "municipality":
        code = str(municipality or "").strip().upper()
        if not MUNICIPALITY_CODE.fullmatch(code):
            return None
        identity["municipality"] = code
    if role == "support_point":
        point = str(support_point or "").strip()
        if not point or len(point) > 100:
            return None
        identity["support_point"] = point
    return identity


_providers = {}


def identity_provider(environ=None, prefix=CAREGIVERS):
    """The configured provider (``prefix``: of the caregivers or of the staff), or None:
    then the development sign-in is used."""
    if not (_setting(prefix, "ISSUER", environ) or _setting(prefix, "METADATA_URL", environ)):
        return None
    key = (prefix, *(_setting(prefix, name, environ) for name in _IDENTITY))
    if key not in _providers:
        _providers[key] = IdentityProvider(environ, prefix)
    return _providers[key]


def staff_identity_provider(environ=None):
    return identity_provider(environ, STAFF)


def require_identity_provider_in_production(environ=None):
    """In production caregivers sign in through the identity provider only: the development
    sign-in (any BSN typed in) must never be the one a real site offers."""
    if not settings.is_production(environ):
        return
    because = "caregivers sign in through the identity provider in production"
    if identity_provider(environ) is None:
        raise settings.missing_in_production(
            "MANTELZORG_OIDC_ISSUER or MANTELZORG_OIDC_METADATA_URL", because)
    settings.require_in_production(("MANTELZORG_OIDC_CLIENT_ID", "MANTELZORG_OIDC_CLIENT_SECRET",
                                    "MANTELZORG_OIDC_REDIRECT_URL"), because, environ)
    session_cipher(environ=environ)   # no session key is made up in production either


class ProductionSignIn(DependencyProvider):
    """Checks at start what ``require_identity_provider_in_production`` asks."""

    def setup(self):
        with settings.stop_if_misconfigured():
            require_identity_provider_in_production()
