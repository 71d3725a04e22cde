"""Signing in with the identity provider (DigiD sits behind such a provider): OpenID Connect's
authorization code flow with PKCE, through Authlib, the ID token checked with joserfc.

Settings (environment); with none of them the development sign-in (a BSN field) is used,
in development only: with ``MANTELZORG_ENV=production`` the gateway does not start without
them (and without ``MANTELZORG_SESSION_KEY``):

| variable | meaning |
|---|---|
| ``MANTELZORG_OIDC_ISSUER`` | the provider's issuer; its discovery document is read from ``<issuer>/.well-known/openid-configuration`` |
| ``MANTELZORG_OIDC_METADATA_URL`` | instead: the discovery document's own address |
| ``MANTELZORG_OIDC_CLIENT_ID``, ``MANTELZORG_OIDC_CLIENT_SECRET`` | this gateway's client registration |
| ``MANTELZORG_OIDC_REDIRECT_URL`` | where the provider sends the caregiver back: ``https://<host>/inloggen/terug`` |
| ``MANTELZORG_OIDC_BSN_CLAIM`` | the ID token claim with the BSN (default ``bsn``) |
| ``MANTELZORG_OIDC_SCOPE`` | scopes asked for (default ``openid``) |
"""
import hmac
import os
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
from common.validators import validate_bsn
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


class IdentityProvider:
    def __init__(self, environ):
        issuer = (environ.get("MANTELZORG_OIDC_ISSUER") or "").rstrip("/")
        self.metadata_url = environ.get("MANTELZORG_OIDC_METADATA_URL") or \
            f"{issuer}/.well-known/openid-configuration"
        self.client_id = environ.get("MANTELZORG_OIDC_CLIENT_ID") or ""
        self.client_secret = environ.get("MANTELZORG_OIDC_CLIENT_SECRET") or ""
        self.redirect_url = environ.get("MANTELZORG_OIDC_REDIRECT_URL") or ""
        self.bsn_claim = environ.get("MANTELZORG_OIDC_BSN_CLAIM") or "bsn"
        self.scope = environ.get("MANTELZORG_OIDC_SCOPE") or "openid"
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
        try:
            bsn = validate_bsn(str(claims.get(self.bsn_claim) or ""))
        except ValueError:
            raise SignInFailed("Uw burgerservicenummer kwam niet mee bij het inloggen. "
                               "Probeer het later opnieuw.") from None
        subject = str(claims["sub"])
        if bsn in subject:   # a provider that uses the BSN as subject: never pass it on
            subject = new_subject()
        return {"bsn": bsn, "sub": subject, "next": safe_next_path(pending.get("next"))}

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


_providers = {}


def identity_provider(environ=os.environ):
    """The configured provider, or None: then the development sign-in is used."""
    if not (environ.get("MANTELZORG_OIDC_ISSUER") or environ.get("MANTELZORG_OIDC_METADATA_URL")):
        return None
    key = tuple(environ.get(name) for name in (
        "MANTELZORG_OIDC_ISSUER", "MANTELZORG_OIDC_METADATA_URL", "MANTELZORG_OIDC_CLIENT_ID",
        "MANTELZORG_OIDC_REDIRECT_URL", "MANTELZORG_OIDC_BSN_CLAIM"))
    if key not in _providers:
        _providers[key] = IdentityProvider(environ)
    return _providers[key]


def require_identity_provider_in_production(environ=os.environ):
    """In production caregivers sign in through the identity provider only: the development
    sign-in (any BSN typed in) must never be the one a real site offers."""
    if not settings.is_production(environ):
        return
    because = "caregivers sign in through the identity provider in production"
    if not (environ.get("MANTELZORG_OIDC_ISSUER") or environ.get("MANTELZORG_OIDC_METADATA_URL")):
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
