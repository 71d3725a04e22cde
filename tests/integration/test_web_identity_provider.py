"""The caregiver pages behind an identity provider (OpenID Connect, as DigiD is offered), and
with no service answering. A gateway of its own runs for these tests, in an empty virtual
host with a short RPC timeout, configured for a small OpenID Connect provider that the test
runs on the loopback interface: discovery, keys, authorisation and token endpoints."""
import base64
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import lone_gateway as started_gateway
from tests.support import random_bsn
from tests.unit.test_web_forms_and_session import OTHER_SITES

CLIENT_ID, CLIENT_SECRET = "mantelzorg-web", "client-secret-" + uuid.uuid4().hex
BSN_CLAIM = "urn:nl:bsn"
ROLE_CLAIM, MUNICIPALITY_CLAIM = "urn:mantelzorg:rol", "urn:mantelzorg:gemeente"


class Provider:
    """A minimal OpenID Connect provider: signs in whoever ``next_bsn`` names."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.codes = {}
        self.next_bsn = None
        self.next_claims = {}   # further claims of the next ID token (a staff member's)
        self.token_requests = []
        self.audience = CLIENT_ID

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()

    def id_token(self, nonce, bsn):
        now = int(time.time())
        return jwt.encode({"iss": self.issuer, "aud": self.audience, "sub": f"digid-{uuid.uuid4()}",
                           "nonce": nonce, "iat": now, "exp": now + 300, BSN_CLAIM: bsn,
                           **self.next_claims},
                          self.key, algorithm="RS256", headers={"kid": "provider-key"})

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, payload, status=200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    return self._json({
                        "issuer": provider.issuer,
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "token_endpoint": f"{provider.issuer}/token",
                        "jwks_uri": f"{provider.issuer}/jwks",
                        "response_types_supported": ["code"],
                        "id_token_signing_alg_values_supported": ["RS256"]})
                if url.path == "/jwks":
                    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(
                        provider.key.public_key()))
                    return self._json({"keys": [{**key, "kid": "provider-key", "use": "sig",
                                                 "alg": "RS256"}]})
                if url.path == "/authorize":
                    asked = {k: v[0] for k, v in parse_qs(url.query).items()}
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = asked
                    self.send_response(302)
                    self.send_header("Location", asked["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": asked["state"]}))
                    self.end_headers()
                    return None
                return self._json({"error": "not_found"}, 404)

            def do_POST(self):
                form = {k: v[0] for k, v in parse_qs(
                    self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                provider.token_requests.append({**form, "authorization":
                                                self.headers.get("Authorization")})
                asked = provider.codes.pop(form.get("code"), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                client = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if asked is None or challenge != asked.get("code_challenge") \
                        or self.headers.get("Authorization") != f"Basic {client}":
                    return self._json({"error": "invalid_grant"}, 400)
                return self._json({"access_token": secrets.token_urlsafe(16),
                                   "token_type": "Bearer", "expires_in": 300,
                                   "id_token": provider.id_token(asked["nonce"],
                                                                 provider.next_bsn)})

        return Handler


@pytest.fixture(scope="module")
def provider():
    running = Provider()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lone_gateway(provider, tmp_path_factory):
    """A gateway with no service behind it, signing caregivers in through ``provider``."""
    with started_gateway(tmp_path_factory.mktemp("web"), MANTELZORG_OIDC_ISSUER=provider.issuer,
                         MANTELZORG_OIDC_CLIENT_ID=CLIENT_ID,
                         MANTELZORG_OIDC_CLIENT_SECRET=CLIENT_SECRET,
                         MANTELZORG_OIDC_REDIRECT_URL="{site}/inloggen/terug",
                         MANTELZORG_OIDC_BSN_CLAIM=BSN_CLAIM,
                         MANTELZORG_STAFF_OIDC_ISSUER=provider.issuer,
                         MANTELZORG_STAFF_OIDC_CLIENT_ID=CLIENT_ID,
                         MANTELZORG_STAFF_OIDC_CLIENT_SECRET=CLIENT_SECRET,
                         MANTELZORG_STAFF_OIDC_REDIRECT_URL="{site}/medewerkers/inloggen/terug",
                         MANTELZORG_STAFF_OIDC_ROLE_CLAIM=ROLE_CLAIM,
                         MANTELZORG_STAFF_OIDC_MUNICIPALITY_CLAIM=MUNICIPALITY_CLAIM) as gateway:
        yield gateway


def test_a_service_that_does_not_answer_gives_a_calm_page(lone_gateway):
    page = requests.get(f"{lone_gateway['site']}/steunpunten", params={"postcode": "3511 AB"},
                        timeout=15)
    assert page.status_code == 503
    assert "Dit lukt nu even niet" in page.text and "opnieuw" in page.text
    assert "Traceback" not in page.text and "Timeout" not in page.text


def test_sign_in_through_the_identity_provider(lone_gateway, provider):
    site, bsn = lone_gateway["site"], random_bsn()
    browser = requests.Session()
    page = browser.get(f"{site}/inloggen", timeout=10)
    assert "Inloggen met DigiD" in page.text
    assert 'name="bsn"' not in page.text   # the development sign-in is off

    start = browser.get(f"{site}/inloggen/start", params={"volgende": "/reiskosten"},
                        allow_redirects=False, timeout=10)
    assert start.status_code == 303
    authorize = urlparse(start.headers["Location"])
    asked = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{provider.issuer}/authorize"
    assert asked["client_id"] == CLIENT_ID and asked["response_type"] == "code"
    assert asked["redirect_uri"] == f"{site}/inloggen/terug"
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]

    provider.next_bsn = bsn
    back = browser.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"].startswith(f"{site}/inloggen/terug?")
    signed_in = browser.get(back.headers["Location"], allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["Location"] == "/reiskosten"
    assert bsn not in signed_in.headers["Set-Cookie"]
    assert provider.token_requests[-1]["grant_type"] == "authorization_code"
    signed_in_page = browser.get(f"{site}/uitloggen", timeout=10).text
    assert 'action="/uitloggen"' in signed_in_page

    # The development form is refused when posted by hand, with a valid CSRF token.
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', signed_in_page).group(1)
    refused = browser.post(f"{site}/inloggen", data={"csrf_token": csrf, "bsn": random_bsn()},
                           allow_redirects=False, timeout=10)
    assert refused.status_code == 403

    # The same answer again (a replayed callback) signs no one in.
    replay = requests.get(back.headers["Location"], allow_redirects=False, timeout=10)
    assert replay.status_code == 400 and "niet gelukt" in replay.text
    assert bsn not in open(lone_gateway["log"]).read()


def test_a_callback_with_a_foreign_state_or_token_signs_no_one_in(lone_gateway, provider):
    site = lone_gateway["site"]
    browser = requests.Session()
    start = browser.get(f"{site}/inloggen/start", allow_redirects=False, timeout=10)
    back = browser.get(start.headers["Location"], allow_redirects=False, timeout=10)
    code = parse_qs(urlparse(back.headers["Location"]).query)["code"][0]
    forged = browser.get(f"{site}/inloggen/terug", params={"code": code, "state": "forged"},
                         allow_redirects=False, timeout=10)
    assert forged.status_code == 400

    # A token for another client (audience) is refused as well.
    provider.next_bsn, provider.audience = random_bsn(), "another-client"
    try:
        start = browser.get(f"{site}/inloggen/start", allow_redirects=False, timeout=10)
        back = browser.get(start.headers["Location"], allow_redirects=False, timeout=10)
        refused = browser.get(back.headers["Location"], allow_redirects=False, timeout=10)
    finally:
        provider.audience = CLIENT_ID
    assert refused.status_code == 400
    assert 'action="/uitloggen"' not in browser.get(f"{site}/uitloggen", timeout=10).text


def _through_the_provider(browser, site, claims, provider):
    start = browser.get(f"{site}/medewerkers/inloggen/start", allow_redirects=False, timeout=10)
    assert start.status_code == 303
    back = browser.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert back.headers["Location"].startswith(f"{site}/medewerkers/inloggen/terug?")
    provider.next_claims = claims   # the ID token is made when the gateway asks for it
    try:
        return browser.get(back.headers["Location"], allow_redirects=False, timeout=10)
    finally:
        provider.next_claims = {}


def test_staff_sign_in_through_their_organisations_provider(lone_gateway, provider):
    site = lone_gateway["site"]
    browser = requests.Session()
    page = browser.get(f"{site}/medewerkers/inloggen", timeout=10)
    assert "Inloggen via uw organisatie" in page.text
    assert 'name="rol"' not in page.text   # the development form is off

    signed_in = _through_the_provider(browser, site, {
        ROLE_CLAIM: "municipality", MUNICIPALITY_CLAIM: "gm0307", "name": "Sam de Jong"},
        provider)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["Location"] == "/medewerkers/aanvragen"
    shown = browser.get(f"{site}/medewerkers/uitloggen", timeout=10).text
    assert "Sam de Jong" in shown and "gemeente GM0307" in shown
    # The development form is refused when posted by hand, with a valid CSRF token.
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', shown).group(1)
    refused = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf, "rol": "admin", "organisatie": "", "naam": "Mallory"},
        allow_redirects=False, timeout=10)
    assert refused.status_code == 403

    # a national role has no desk: the staff start page
    fund = _through_the_provider(requests.Session(), site, {ROLE_CLAIM: "fund", "name": "Fenna"},
                                 provider)
    assert fund.status_code == 303 and fund.headers["Location"] == "/medewerkers"

    # a role the staff pages do not know, or a municipality without its code: no one
    for claims in ({ROLE_CLAIM: "caregiver"}, {ROLE_CLAIM: "municipality"},
                   {ROLE_CLAIM: "municipality", MUNICIPALITY_CLAIM: "Amersfoort"}):
        other = requests.Session()
        answer = _through_the_provider(other, site, {**claims, "name": "Eve"}, provider)
        assert answer.status_code == 400 and "niet inloggen" in answer.text, claims
        assert "Eve" not in other.get(f"{site}/medewerkers/uitloggen", timeout=10).text


def _signed_in_through_provider(site, provider, volgende):
    """Where the gateway sends a caregiver after the provider's round trip that started
    with ``volgende``."""
    browser = requests.Session()
    start = browser.get(f"{site}/inloggen/start", params={"volgende": volgende},
                        allow_redirects=False, timeout=10)
    assert start.status_code == 303
    provider.next_bsn = random_bsn()
    back = browser.get(start.headers["Location"], allow_redirects=False, timeout=10)
    signed_in = browser.get(back.headers["Location"], allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303, signed_in.text
    return signed_in.headers["Location"]


@pytest.mark.parametrize("volgende", [v for v in OTHER_SITES if isinstance(v, str) and v
                                      and "\x00" not in v], ids=repr)
def test_the_provider_round_trip_never_ends_on_another_site(lone_gateway, provider, volgende):
    assert _signed_in_through_provider(lone_gateway["site"], provider, volgende) == \
        "/verklaringen"


def test_the_provider_round_trip_ends_on_the_page_asked_for(lone_gateway, provider):
    asked = "/steunpunten?postcode=3511%20AB"
    assert _signed_in_through_provider(lone_gateway["site"], provider, asked) == asked
