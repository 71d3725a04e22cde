"""Who is asking: the JWT of the contract (contract/README.md), and what each role
may do."""
import threading
import time
from dataclasses import dataclass, field

import jwt
from nameko.extensions import DependencyProvider

from common import config as settings
from common.errors import Forbidden, Unauthenticated, Unavailable
from common.logging import get_logger
from common.validators import MUNICIPALITY_CODE, validate_bsn

log = get_logger()
IDENTITY_PROVIDER_ALGORITHMS = ("RS256", "ES256")
IDENTITY_PROVIDER_SETTINGS = ("MANTELZORG_JWT_JWKS_URL", "MANTELZORG_JWT_ISSUER",
                              "MANTELZORG_JWT_AUDIENCE")

ROLES = ("caregiver", "municipality", "partner", "support_point", "fund", "campaign", "admin")


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


class MisconfiguredTokens(RuntimeError):
    """Token verification is set up so that it would accept what it must refuse. (Not
    nameko's ConfigurationError: with that, ``nameko run`` stops with exit code 0.)"""


class IdentityProviderKeys:
    """The identity provider's signing keys (its JWKS). Fetched when first needed and again
    when older than MAX_AGE_SECONDS; a token naming a key id that is not in the set refetches
    it, at most once per UNKNOWN_KID_REFETCH_SECONDS, so that tokens with made-up key ids
    cannot make the gateway hammer the identity provider. An identity provider that cannot
    be reached is UNAVAILABLE (the token may well be good), never UNAUTHENTICATED; while it
    is down, keys fetched before keep working."""

    MAX_AGE_SECONDS = 300
    UNKNOWN_KID_REFETCH_SECONDS = 60
    FETCH_TIMEOUT_SECONDS = 5

    def __init__(self, url, clock=time.monotonic):
        self.client = jwt.PyJWKClient(url, cache_jwk_set=False, cache_keys=False,
                                      timeout=self.FETCH_TIMEOUT_SECONDS)
        self.clock = clock
        self.keys = None            # key id -> PyJWK
        self.fetched_at = None      # when the set was last fetched
        self.attempted_at = None    # when a fetch was last tried, whatever came of it
        self.lock = threading.Lock()

    def signing_key(self, kid):
        with self.lock:   # one fetch at a time; the others then find its keys
            if self.keys is None or self._older_than(self.fetched_at, self.MAX_AGE_SECONDS):
                self._fetch()
            if kid not in self.keys and \
                    self._older_than(self.attempted_at, self.UNKNOWN_KID_REFETCH_SECONDS):
                self._fetch()
            key = self.keys.get(kid)
        if key is None:
            raise Unauthenticated("the token is signed with a key the identity provider "
                                  "does not publish")
        return key

    def _older_than(self, moment, seconds):
        return moment is None or self.clock() - moment >= seconds

    def _fetch(self):
        self.attempted_at = self.clock()
        try:
            keys = jwt.PyJWKSet.from_dict(self.client.fetch_data()).keys
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError, AttributeError) as error:
            log.warning("gateway.identity_provider_unreachable", error=type(error).__name__)
            if self.keys is None:
                raise Unavailable("the identity provider cannot be reached; try again later") \
                    from None
            return   # keep the keys fetched before
        self.keys = {key.key_id: key for key in keys if key.key_id}
        self.fetched_at = self.attempted_at


class TokenVerifier:
    """HS256 with MANTELZORG_JWT_SECRET in development and tests; with
    MANTELZORG_JWT_JWKS_URL set, RS256/ES256 from the identity provider, whose issuer and
    audience (MANTELZORG_JWT_ISSUER, MANTELZORG_JWT_AUDIENCE) must then be configured too:
    without them the gateway refuses to start. In production only the identity provider's
    tokens count, and its three settings are required. A caregiver's BSN is in the claim
    ``bsn``, or in the claim that MANTELZORG_JWT_BSN_CLAIM names (identity brokers name it
    differently)."""

    def __init__(self, environ=None):
        def read(variable, default=None):   # secrets and identity settings: environment only
            return settings.setting(None, variable, default, environ=environ)

        settings.require_in_production(IDENTITY_PROVIDER_SETTINGS,
                                       "tokens come from the identity provider", environ)
        self.bsn_claim = read("MANTELZORG_JWT_BSN_CLAIM", "bsn")
        # Development sign-in (HS256 with a shared secret) exists only in development.
        self.secret = None if settings.is_production(environ) else read("MANTELZORG_JWT_SECRET")
        self.jwks_url = read("MANTELZORG_JWT_JWKS_URL")
        self.issuer = read("MANTELZORG_JWT_ISSUER")
        self.audience = read("MANTELZORG_JWT_AUDIENCE")
        self.jwks = None
        self._kept = {}     # token -> (verified until, claims); see _verified
        if self.jwks_url:
            if not (self.issuer and self.audience):
                raise MisconfiguredTokens(
                    "MANTELZORG_JWT_JWKS_URL is set: MANTELZORG_JWT_ISSUER and "
                    "MANTELZORG_JWT_AUDIENCE must be set too, or any token that the identity "
                    "provider issued for another application would be accepted")
            self.jwks = IdentityProviderKeys(self.jwks_url)

    def principal(self, authorization):
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        claims = self._verified(token.strip())
        role = claims.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise Unauthenticated("the token has no known role")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise Unauthenticated("the token's subject (sub) is empty")
        municipality = claims.get("municipality")
        if role == "municipality" and not municipality:
            raise Unauthenticated("a municipality token must name its municipality")
        if municipality is not None and not (isinstance(municipality, str)
                                             and MUNICIPALITY_CODE.fullmatch(municipality)):
            raise Unauthenticated("the token's municipality is not a CBS code (GM0363)")
        support_point = claims.get("support_point")
        if role == "support_point" and not (isinstance(support_point, str)
                                            and support_point.strip()):
            raise Unauthenticated("a support point token must name its support point")
        bsn = None
        if role == "caregiver":
            try:
                bsn = validate_bsn(str(claims.get(self.bsn_claim) or ""))
            except ValueError:
                raise Unauthenticated("a caregiver token must carry a valid BSN") from None
        return Principal(sub=sub, role=role, municipality=municipality,
                         support_point=support_point if isinstance(support_point, str) else None,
                         bsn=bsn)

    # A client sends the same token with every request: its verified claims are kept for a
    # short while (never beyond the token's expiry, nor beyond the identity provider's key set
    # it was verified with), which saves the gateway the signature check on most requests
    # (10 % of its CPU per request in a profile).
    VERIFIED_FOR_SECONDS = 60
    VERIFIED_KEPT = 10_000

    def _verified(self, token):
        now = time.time()
        keys = self.jwks
        keys_read = keys.fetched_at if keys else None
        keys_fresh = keys is None or not keys._older_than(keys_read, keys.MAX_AGE_SECONDS)
        kept = self._kept.get(token)
        if kept is not None and keys_fresh and now < kept[0] and kept[1] == keys_read:
            return kept[2]
        claims = self._decode(token)
        if len(self._kept) >= self.VERIFIED_KEPT:
            self._kept.clear()
        self._kept[token] = (min(now + self.VERIFIED_FOR_SECONDS, claims["exp"]),
                             keys.fetched_at if keys else None, claims)
        return claims

    def _decode(self, token):
        options = {"require": ["exp", "sub"]}
        checks = {"issuer": self.issuer, "audience": self.audience}
        try:
            if self.jwks:
                key = self.jwks.signing_key(jwt.get_unverified_header(token).get("kid"))
                if key.algorithm_name not in IDENTITY_PROVIDER_ALGORITHMS:
                    raise Unauthenticated("the token's signing key has an algorithm that is not "
                                          "accepted")
                # Only the key's own algorithm: a token cannot choose HS256 with the public
                # key as its secret, nor another key type.
                return jwt.decode(token, key.key, algorithms=[key.algorithm_name],
                                  options=options, **checks)
            if not self.secret:
                raise Unauthenticated("token verification is not configured")
            return jwt.decode(token, self.secret, algorithms=["HS256"], options=options,
                              **checks)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise Unauthenticated("the token was issued by another issuer or for another "
                                  "audience") from None
        except (jwt.PyJWTError, ValueError, TypeError):   # a token is untrusted input
            raise Unauthenticated("the token is not valid") from None


class Authentication(DependencyProvider):
    """The TokenVerifier of the process, built from the environment when the service starts:
    a wrong setting stops the start."""

    def setup(self):
        with settings.stop_if_misconfigured():
            self.verifier = TokenVerifier()

    def get_dependency(self, worker_ctx):
        return self.verifier


def issue_development_token(secret, role, sub, lifetime_seconds=8 * 3600, **claims):
    """A token for local development and tests (HS256)."""
    now = int(time.time())
    body = {"sub": sub, "role": role, "iat": now, "exp": now + lifetime_seconds}
    body.update({k: v for k, v in claims.items() if v is not None})
    return jwt.encode(body, secret, algorithm="HS256")
