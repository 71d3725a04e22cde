"""The pages' own logic without a platform: the fund's reasons in Dutch for caregivers and staff, an allocation share
in a sentence, the QR code's link to the check page, and telling a token signed with a
published key from a forged one; the fund's claim lists paged each on its own."""
import base64

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import printable
from gateway.web.app import staff_path
from services.campaign import allocation
from gateway.web.desks.check import signed_by_the_platform
from gateway.web.reasons import claim_reasons


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
     "€ 12,50 boven het maximum van € 1.500,00 per jaar (2026) wordt niet vergoed."),
    ("not paid: its bank account cannot be read",
     "Niet betaald: het rekeningnummer kon niet worden gelezen."),
    ("the fund's staff contact the caregiver", "Neem contact op met de mantelzorger."),
    ("Gebeld met de mantelzorger: klopt.", "Gebeld met de mantelzorger: klopt."),
])
def test_each_part_of_a_reason_in_dutch_and_a_reviewers_own_words_as_they_are(reason, words):
    assert claim_reasons(reason) == [words]
    assert claim_reasons(None) == []


def test_the_caregiver_reads_who_acts():
    assert claim_reasons("the fund's staff contact the caregiver", caregiver=True) == [
        "Het reiskostenfonds neemt contact met u op."]


def test_an_allocation_share_is_explained_in_dutch_as_well():
    from datetime import datetime, timezone

    def waiting(order_id, code, requested, minute):
        return {"_id": order_id, "municipality_code": code, "quantity_requested": requested,
                "quantity_allocated": 0, "created_at": datetime(2026, 3, 1, 9, minute,
                                                                tzinfo=timezone.utc)}

    given = allocation.allocation_round(
        1000, [waiting("o1", "GM0363", 1200, 1), waiting("o2", "GM0344", 100, 2)],
        {"GM0363": {"name": "Amsterdam", "population": 900_000},
         "GM0344": {"name": "Utrecht", "population": 100_000}})
    dutch = {order["_id"]: words.dutch for order, _, words in given}
    assert dutch["o2"] == (
        "Utrecht (GM0344) had nog 100 tassen nodig, niet meer dan haar precieze aandeel van "
        "100,00 (haar 100.000 inwoners van de 1.000.000 in de 2 gemeenten die 1.000 tassen "
        "delen): zij krijgt ze alle 100. Deze bestelling, haar enige wachtende bestelling, "
        "krijgt 100: alles wat zij nog nodig had.")
    assert dutch["o1"].startswith("Amsterdam (GM0363) krijgt 900 tassen: haar 900.000 inwoners")
    assert dutch["o1"].endswith("krijgt 900; zij wacht nog op 300.")
    assert [str(words)[:9] for _, _, words in given] == ["Amsterdam", "Utrecht ("]
    assert "gets 900 bags" in str(given[0][2])   # the contract's explanation stays as it was


def test_the_qr_code_holds_a_link_to_the_check_page_with_the_token(monkeypatch):
    token = "eyJhbGciOiJFZERTQSJ9.eyJyZWZlcmVuY2UiOiJNWlYifQ.c2ln+/="
    link = printable.check_link(token, environ={
        "MANTELZORG_PUBLIC_URL": "https://mantelzorg.example.nl/"})
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


def test_a_claim_the_payout_file_could_not_carry_says_so_in_dutch():
    assert claim_reasons("not paid: the account holder's name has characters a bank transfer "
                         "cannot carry; the fund's staff contact the caregiver") == [
        "Niet betaald: de naam van de rekeninghouder heeft tekens die een bankoverschrijving "
        "niet kan meenemen.", "Neem contact op met de mantelzorger."]


class ClaimsPage:
    """Enough of a page for the fund's claim lists: the query asked, a list of claims
    answered for each status, and what the page would show."""

    def __init__(self, args, held, waiting):
        self.request = type("Request", (), {"args": args})()
        self.answers = {"held": held, "waiting": waiting}
        self.asked = []

    def require_staff(self, *roles):
        assert roles == ("fund",)

    def graphql(self, query, variables):
        self.asked.append(variables)
        first = variables["first"]
        return {name: rows[:first] for name, rows in self.answers.items()}

    def render(self, template, **values):
        return values


def test_the_fund_pages_each_claim_list_on_its_own():
    from gateway.web.desks import fund

    def rows(prefix, count):
        return [{"id": f"{prefix}{n:03}", "reason": None} for n in range(count)]

    page = ClaimsPage({"ingediend_na": "w100"}, rows("h", 3), rows("w", fund.LIST_SIZE + 5))
    shown = fund.claims(page)
    assert page.asked == [{"first": fund.LIST_SIZE + 1, "heldAfter": None,
                           "waitingAfter": "w100"}]
    assert len(shown["waiting"]["rows"]) == fund.LIST_SIZE
    last = shown["waiting"]["rows"][-1]["id"]
    # the next page of the submitted claims; the held ones stay on their (first) page
    assert shown["waiting"]["next_page"] == f"/medewerkers/reiskosten?ingediend_na={last}"
    assert shown["waiting"]["first_page"] == "/medewerkers/reiskosten"
    assert shown["held"]["next_page"] is None and len(shown["held"]["rows"]) == 3

    page = ClaimsPage({"aangehouden_na": "h007", "ingediend_na": "w100"},
                      rows("h", fund.LIST_SIZE + 1), rows("w", 1))
    shown = fund.claims(page)
    assert shown["held"]["next_page"] == (
        f"/medewerkers/reiskosten?aangehouden_na=h{fund.LIST_SIZE - 1:03}&ingediend_na=w100")
    assert shown["held"]["first_page"] == "/medewerkers/reiskosten?ingediend_na=w100"
    assert shown["waiting"]["next_page"] is None
