"""Who is asking: the JWT of the contract (shared/contract/README.md), and what each role
may do."""
import os
from dataclasses import dataclass, field

import jwt

from common import config as settings
from common.errors import DomainError, Forbidden
from common.validators import validate_bsn

ROLES = ("caregiver", "municipality", "partner", "support_point", "fund", "campaign", "admin")


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Principal:
    sub: str | None = None
    role: str | None = None
    municipality: str | None = None
    support_point: str | None = None
    # The caregiver's BSN as the identity provider proved it: personal data, so never in a
    # repr (and so never in a log line or a traceback).
    bsn: str | None = field(default=None, repr=False)

    @property
    def authenticated(self):
        return self.role is not None

    def as_actor(self):
        """What the services are told about the caller: no token, and personal data only
        as the caregiver's own BSN, inside the RPC payload (services compare it by its keyed
        hash and never log it)."""
        actor = {"sub": self.sub, "role": self.role, "municipality": self.municipality,
                 "support_point": self.support_point}
        if self.role == "caregiver":
            actor["bsn"] = self.bsn
        return actor

    def require(self, *roles):
        if not self.authenticated:
            raise Unauthenticated("a valid bearer token is required")
        if self.role not in roles:
            raise Forbidden("this operation is not allowed for your role")
        return self

    def require_municipality(self, code, *also):
        """Staff of this municipality, or one of the roles in ``also`` (admin, ...)."""
        self.require("municipality", *also)
        if self.role == "municipality" and self.municipality != code:
            raise Forbidden("only your own municipality")
        return self


ANONYMOUS = Principal()


IDENTITY_PROVIDER_SETTINGS = ("MANTELZORG_JWT_JWKS_URL", "MANTELZORG_JWT_ISSUER",
                              "MANTELZORG_JWT_AUDIENCE")


class TokenVerifier:
    """HS256 with MANTELZORG_JWT_SECRET in development and tests; with
    MANTELZORG_JWT_JWKS_URL set, RS256/ES256 from the identity provider, with issuer and
    audience checked. In production only the identity provider's tokens count, and its three
    settings are required. A caregiver's BSN is in the claim ``bsn``, or in the claim that
    MANTELZORG_JWT_BSN_CLAIM names (identity brokers name it differently)."""

    def __init__(self, environ=os.environ):
        settings.require_in_production(IDENTITY_PROVIDER_SETTINGS,
                                       "tokens come from the identity provider", environ)
        self.bsn_claim = environ.get("MANTELZORG_JWT_BSN_CLAIM") or "bsn"
        # Development sign-in (HS256 with a shared secret) exists only in development.
        self.secret = None if settings.is_production(environ) else environ.get("MANTELZORG_JWT_SECRET")
        self.jwks_url = environ.get("MANTELZORG_JWT_JWKS_URL")
        self.issuer = environ.get("MANTELZORG_JWT_ISSUER")
        self.audience = environ.get("MANTELZORG_JWT_AUDIENCE")
        self.jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True) if self.jwks_url else None

    def principal(self, authorization):
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        claims = self._decode(token.strip())
        role = claims.get("role")
        if role not in ROLES:
            raise Unauthenticated("the token has no known role")
        if role == "municipality" and not claims.get("municipality"):
            raise Unauthenticated("a municipality token must name its municipality")
        if role == "support_point" and not claims.get("support_point"):
            raise Unauthenticated("a support point token must name its support point")
        bsn = None
        if role == "caregiver":
            try:
                bsn = validate_bsn(str(claims.get(self.bsn_claim) or ""))
            except ValueError:
                raise Unauthenticated("a caregiver token must carry a valid BSN") from None
        return Principal(sub=str(claims["sub"]), role=role,
                         municipality=claims.get("municipality"),
                         support_point=claims.get("support_point"), bsn=bsn)

    def _decode(self, token):
        options = {"require": ["exp", "sub"]}
        try:
            if self.jwks:
                key = self.jwks.get_signing_key_from_jwt(token).key
                return jwt.decode(token, key, algorithms=["RS256", "ES256"], options=options,
                                  issuer=self.issuer, audience=self.audience)
            if not self.secret:
                raise Unauthenticated("token verification is not configured")
            return jwt.decode(token, self.secret, algorithms=["HS256"], options=options)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not valid") from None


def issue_development_token(secret, role, sub, lifetime_seconds=8 * 3600, **claims):
    """A token for local development and tests (HS256)."""
    import time

    now = int(time.time())
    body = {"sub": sub, "role": role, "iat": now, "exp": now + lifetime_seconds}
    body.update({k: v for k, v in claims.items() if v is not None})
    return jwt.encode(body, secret, algorithm="HS256")
