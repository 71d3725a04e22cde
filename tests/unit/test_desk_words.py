"""The desks' own logic without a platform: the fund's reasons in Dutch, an allocation share
in a sentence, the QR code's link to the check page, and telling a token signed with a
published key from a forged one."""
import base64

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import printable
from gateway.web.app import staff_path
from gateway.web.desks.campaign import share_words
from gateway.web.desks.check import signed_by_the_platform
from gateway.web.desks.words import claim_reasons


def test_a_held_claim_says_why_in_dutch():
    reason = ("implausible distance: trip 1: 200 km stated, 35.9 km in a straight line between "
              "the postcode areas (more than 1.5 x that + 10 km); trip 2: 90.5 km stated, 3.2 km "
              "in a straight line between the postcode areas (more than 1.5 x that + 10 km); "
              "the declaration was revoked")
    assert claim_reasons(reason) == [
        "Rit 1: de afstand lijkt niet te kloppen. Opgegeven is 200 km enkele reis; hemelsbreed "
        "tussen de postcodegebieden is het 35,9 km (meer dan 1,5 keer dat plus 10 km).",
        "Rit 2: de afstand lijkt niet te kloppen. Opgegeven is 90,5 km enkele reis; hemelsbreed "
        "tussen de postcodegebieden is het 3,2 km (meer dan 1,5 keer dat plus 10 km).",
        "De mantelzorgverklaring is ingetrokken door de gemeente."]


@pytest.mark.parametrize("reason, words", [
    ("the declaration expired", "De mantelzorgverklaring is verlopen."),
    ("trip 3: 2 km one way or less is not paid",
     "Rit 3: 2 km enkele reis of minder wordt niet vergoed."),
    ("trip 1: 75.00 paid, the most per trip",
     "Rit 1: € 75,00 vergoed, het hoogste bedrag per rit."),
    ("12.50 over the annual cap of 1500.00 for 2026 is not paid",
     "€ 12,50 boven het maximum van € 1500,00 per jaar (2026) wordt niet vergoed."),
    ("Gebeld met de mantelzorger: klopt.", "Gebeld met de mantelzorger: klopt."),
])
def test_each_part_of_a_reason_in_dutch_and_a_reviewers_own_words_as_they_are(reason, words):
    assert claim_reasons(reason) == [words]
    assert claim_reasons(None) == []


@pytest.mark.parametrize("now, requested, allocated, words", [
    (30, 40, 40, "Deze bestelling krijgt nu 30 tassen en is nu compleet."),
    (1, 40, 10, "Deze bestelling krijgt nu 1 tas en wacht nog op 30."),
    (0, 40, 10, "Deze bestelling krijgt in deze ronde geen tassen en wacht nog op 30."),
])
def test_an_allocation_share_in_a_sentence(now, requested, allocated, words):
    assert share_words({"allocatedNow": now, "order": {
        "quantityRequested": requested, "quantityAllocated": allocated}}) == words


def test_the_qr_code_holds_a_link_to_the_check_page_with_the_token(monkeypatch):
    token = "eyJhbGciOiJFZERTQSJ9.eyJyZWZlcmVuY2UiOiJNWlYifQ.c2ln+/="
    link = printable.check_link(token, environ={
        "MANTELZORG_PUBLIC_BASE_URL": "https://mantelzorg.example.nl/"})
    assert link == ("https://mantelzorg.example.nl/controleren?token="
                    "eyJhbGciOiJFZERTQSJ9.eyJyZWZlcmVuY2UiOiJNWlYifQ.c2ln%2B%2F%3D")

    encoded = []

    class Recording(printable.QrCodeWidget):
        def __init__(self, value, **options):
            encoded.append(value)
            super().__init__(value, **options)

    monkeypatch.setattr(printable, "QrCodeWidget", Recording)
    printable.render({"reference": "MZV-2026-000001", "municipality_code": "GM0307",
                      "municipality_name": "Amersfoort", "valid_from": "2026-01-01",
                      "valid_until": "2026-12-31", "purposes": ["PARKING_PERMIT"],
                      "token": token, "verification_code": "ABCD-1234"})
    assert encoded == [printable.check_link(token)]
    assert "/controleren?token=" in encoded[0]


def _jwk(private, kid):
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def test_a_token_signed_with_a_published_key_and_a_forged_one():
    published, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = {"keys": [_jwk(published, "k1")]}
    claims = {"iss": "mantelzorg-declaration", "reference": "MZV-2026-000001", "exp": 1}
    genuine = jwt.encode(claims, published, algorithm="EdDSA", headers={"kid": "k1"})
    assert signed_by_the_platform(genuine, keys)   # expiry is for the online check
    assert not signed_by_the_platform(
        jwt.encode(claims, other, algorithm="EdDSA", headers={"kid": "k1"}), keys)
    assert not signed_by_the_platform(
        jwt.encode(claims, published, algorithm="EdDSA", headers={"kid": "k2"}), keys)
    assert not signed_by_the_platform(genuine[:-3] + "AAA", keys)
    assert not signed_by_the_platform("not a token", keys)
    assert not signed_by_the_platform(jwt.encode(claims, "a-shared-secret-of-thirty-two-bytes", algorithm="HS256",
                                                 headers={"kid": "k1"}), keys)


@pytest.mark.parametrize("path, staff", [
    ("/medewerkers", True), ("/medewerkers/steunpunt", True), ("/controleren", True),
    ("/controleren/x", True), ("/controlerenx", False), ("/medewerkersx", False),
    ("/verklaringen", False), ("/", False)])
def test_which_pages_are_the_staff_pages(path, staff):
    assert staff_path(path) is staff
