"""Tokens of a production identity provider: RS256/ES256 verified against its JWKS, served
here by a local HTTP server with keys made for the test."""
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import MisconfiguredTokens, TokenVerifier

ISSUER = "https://idp.example.nl"
AUDIENCE = "mantelzorg-gateway"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(private_key, kid, alg):
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    return {**algorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid,
            "alg": alg, "use": "sig"}


class IdentityProvider:
    """A JWKS endpoint on a free local port that counts how often it is asked."""

    def __init__(self, keys):
        self.keys = keys
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.fetches += 1
                body = json.dumps({"keys": provider.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    running = IdentityProvider([_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")])
    yield running
    running.close()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def verifier(provider):
    made = TokenVerifier({"MANTELZORG_JWT_JWKS_URL": provider.url,
                          "MANTELZORG_JWT_ISSUER": ISSUER, "MANTELZORG_JWT_AUDIENCE": AUDIENCE})
    made.jwks.clock = Clock()
    return made


def _claims(**changes):
    now = int(time.time())
    claims = {"sub": "staff-7", "role": "municipality", "municipality": "GM0363",
              "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _token(claims=None, key=RSA_KEY, alg="RS256", kid="rsa-1"):
    return jwt.encode(claims or _claims(), key, algorithm=alg, headers={"kid": kid})


def _refusal(verifier, token):
    with pytest.raises(Exception) as raised:
        verifier.principal(f"Bearer {token}")
    return raised.value.code, raised.value.message


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_the_public_key(kid):
    """The classic confusion: HS256 signed with the RSA public key as the HMAC secret."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def test_tokens_of_the_identity_provider_are_accepted_with_rs256_and_es256(verifier):
    for token in (_token(), _token(key=EC_KEY, alg="ES256", kid="ec-1")):
        principal = verifier.principal(f"Bearer {token}")
        assert (principal.role, principal.sub, principal.municipality) == (
            "municipality", "staff-7", "GM0363")


@pytest.mark.parametrize("case, token, reason", [
    ("alg none", lambda: jwt.encode(_claims(), None, algorithm="none", headers={"kid": "rsa-1"}),
     "not valid"),
    ("wrong signature", lambda: _token(key=OTHER_RSA_KEY), "not valid"),
    ("HS256 with the public key", lambda: _hs256_with_the_public_key("rsa-1"), "not valid"),
    ("ES256 header on the RSA key", lambda: _token(key=EC_KEY, alg="ES256", kid="rsa-1"),
     "not valid"),
    ("expired", lambda: _token(_claims(iat=int(time.time()) - 600,
                                       exp=int(time.time()) - 60)), "expired"),
    ("not yet valid", lambda: _token(_claims(nbf=int(time.time()) + 600)), "not valid"),
    ("other audience", lambda: _token(_claims(aud="another-app")), "another audience"),
    ("no audience", lambda: _token(_claims(aud=None)), "not valid"),
    ("other issuer", lambda: _token(_claims(iss="https://evil.example")), "another issuer"),
    ("no issuer", lambda: _token(_claims(iss=None)), "not valid"),
    ("no expiry", lambda: _token(_claims(exp=None)), "not valid"),
    ("no subject", lambda: _token(_claims(sub=None)), "not valid"),
    ("empty subject", lambda: _token(_claims(sub="")), "subject (sub) is empty"),
    ("blank subject", lambda: _token(_claims(sub="   ")), "subject (sub) is empty"),
    ("subject not a string", lambda: _token(_claims(sub=7)), "not valid"),
    ("no role", lambda: _token(_claims(role=None)), "no known role"),
    ("role a list", lambda: _token(_claims(role=["admin"])), "no known role"),
    ("municipality a name", lambda: _token(_claims(municipality="Amsterdam")), "not a CBS code"),
    ("municipality lower case", lambda: _token(_claims(municipality="gm0363")), "not a CBS code"),
    ("municipality missing", lambda: _token(_claims(municipality=None)), "name its municipality"),
    ("municipality on another role", lambda: _token(_claims(role="partner",
                                                            municipality="GM63")),
     "not a CBS code"),
    ("support point without its id", lambda: _token(_claims(role="support_point",
                                                             municipality=None)),
     "name its support point"),
    ("caregiver without a BSN", lambda: _token(_claims(role="caregiver", municipality=None)),
     "valid BSN"),
    ("caregiver with a wrong BSN", lambda: _token(_claims(role="caregiver", municipality=None,
                                                          bsn="123456789")), "valid BSN"),
    ("no key id", lambda: jwt.encode(_claims(), RSA_KEY, algorithm="RS256"), "does not publish"),
    ("garbage", lambda: "a.b.c", "not valid"),
])
def test_bad_tokens_are_refused(verifier, case, token, reason):
    code, message = _refusal(verifier, token())
    assert code == "UNAUTHENTICATED", case
    assert reason in message, case


def test_a_development_token_is_refused_when_an_identity_provider_is_configured(verifier):
    hs = jwt.encode(_claims(), "a-development-secret", algorithm="HS256",
                    headers={"kid": "rsa-1"})
    assert _refusal(verifier, hs)[0] == "UNAUTHENTICATED"


def test_an_rs256_token_is_refused_where_development_tokens_are_expected():
    development = TokenVerifier({"MANTELZORG_JWT_SECRET": "dev-secret"})
    assert _refusal(development, _token())[0] == "UNAUTHENTICATED"
    # nor is HS256 signed with another secret, nor one for another audience when one is set
    checked = TokenVerifier({"MANTELZORG_JWT_SECRET": "dev-secret",
                             "MANTELZORG_JWT_AUDIENCE": AUDIENCE})
    other = jwt.encode(_claims(aud="another-app"), "dev-secret", algorithm="HS256")
    assert "another audience" in _refusal(checked, other)[1]


def test_an_unknown_key_id_refetches_the_key_set_at_most_once_a_minute(verifier, provider):
    def made_up_key_ids():
        for attempt in range(5):
            assert _refusal(verifier, _token(kid=f"made-up-{attempt}"))[0] == "UNAUTHENTICATED"

    verifier.principal(f"Bearer {_token()}")
    made_up_key_ids()
    assert provider.fetches == 1, "the set was fetched just now"
    verifier.jwks.clock.now += 61
    made_up_key_ids()
    assert provider.fetches == 2, "only the first unknown key id of the minute refetches"
    # the provider rotates: its new key is found once the minute has passed
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.keys = [*provider.keys, _jwk(new_key, "rsa-2", "RS256")]
    assert _refusal(verifier, _token(key=new_key, kid="rsa-2"))[0] == "UNAUTHENTICATED"
    verifier.jwks.clock.now += 61
    assert verifier.principal(f"Bearer {_token(key=new_key, kid='rsa-2')}").sub == "staff-7"
    assert provider.fetches == 3


def test_the_key_set_is_fetched_again_when_it_is_old(verifier, provider):
    verifier.principal(f"Bearer {_token()}")
    verifier.principal(f"Bearer {_token()}")
    assert provider.fetches == 1
    verifier.jwks.clock.now += verifier.jwks.MAX_AGE_SECONDS + 1
    verifier.principal(f"Bearer {_token()}")
    assert provider.fetches == 2


def _closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


def test_an_identity_provider_that_cannot_be_reached_is_unavailable_not_unauthenticated():
    verifier = TokenVerifier({"MANTELZORG_JWT_JWKS_URL": _closed_port_url(),
                              "MANTELZORG_JWT_ISSUER": ISSUER,
                              "MANTELZORG_JWT_AUDIENCE": AUDIENCE})
    code, message = _refusal(verifier, _token())
    assert code == "UNAVAILABLE" and "identity provider" in message


def test_keys_fetched_before_keep_working_while_the_identity_provider_is_down(verifier,
                                                                             provider):
    verifier.principal(f"Bearer {_token()}")
    provider.close()
    verifier.jwks.clock.now += verifier.jwks.MAX_AGE_SECONDS + 1
    assert verifier.principal(f"Bearer {_token()}").sub == "staff-7"


@pytest.mark.parametrize("missing", ["MANTELZORG_JWT_ISSUER", "MANTELZORG_JWT_AUDIENCE"])
def test_a_jwks_without_issuer_and_audience_refuses_to_start(missing):
    settings = {"MANTELZORG_JWT_JWKS_URL": "https://idp.example.nl/jwks.json",
                "MANTELZORG_JWT_ISSUER": ISSUER, "MANTELZORG_JWT_AUDIENCE": AUDIENCE}
    settings[missing] = ""
    with pytest.raises(MisconfiguredTokens, match=missing):
        TokenVerifier(settings)
