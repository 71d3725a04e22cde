"""The caregiver pages' pieces without a server: the sealed session, form parsing, and where
a sign-in may send the browser afterwards."""
import base64
import secrets
from datetime import date

import pytest

from common.crypto import DataCipher
from gateway.web.forms import Form, parse_day, parse_decimal
from gateway.web.session import ABSOLUTE_SECONDS, IDLE_SECONDS, SessionCodec
from gateway.web.signin import safe_next_path


def codec(clock):
    return SessionCodec(DataCipher([("k1", secrets.token_bytes(32))]), clock=lambda: clock[0])


def test_the_session_is_sealed_and_expires_when_idle_or_old():
    now = [1_000_000.0]
    sessions = codec(now)
    session = sessions.load("")
    session.sign_in("111222333", "caregiver-x")
    sealed = sessions.dump(session)
    assert "111222333" not in sealed
    assert base64.urlsafe_b64encode(b"111222333").decode()[:8] not in sealed
    assert sessions.load(sealed).principal().bsn == "111222333"

    now[0] += IDLE_SECONDS + 1
    assert not sessions.load(sealed).signed_in          # idle too long
    now[0] -= IDLE_SECONDS + 1
    for _ in range(ABSOLUTE_SECONDS // (IDLE_SECONDS - 60) + 1):   # active, but for too long
        now[0] += IDLE_SECONDS - 60
        session = sessions.load(sealed)
        sealed = sessions.dump(session)
    assert not session.signed_in


def test_a_cookie_sealed_with_another_key_is_an_empty_session():
    now = [1_000_000.0]
    session = codec(now).load("")
    session.sign_in("111222333", "caregiver-x")
    assert codec(now).load(codec(now).dump(session)) == {}
    assert codec(now).load("not.a.cookie") == {} and codec(now).load("x") == {}


def test_signing_in_replaces_the_csrf_token():
    session = codec([0.0]).load("")
    before = session.csrf_token()
    session.sign_in("111222333", "caregiver-x")
    assert session.csrf_token() != before
    assert session.csrf_valid(session.csrf_token()) and not session.csrf_valid(before)
    assert not session.csrf_valid("") and not session.csrf_valid(None)


@pytest.mark.parametrize("text, expected", [
    ("15-03-2026", date(2026, 3, 15)), ("5/3/2026", date(2026, 3, 5)),
    ("15.03.2026", date(2026, 3, 15)), ("2026-03-15", date(2026, 3, 15)),
    ("31-02-2026", None), ("15 maart", None), ("", None)])
def test_days_as_caregivers_write_them(text, expected):
    assert parse_day(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("12,5", "12.5"), ("12.5", "12.5"), ("1.234,50", "1234.50"), ("€ 7,50", "7.50"),
    ("-3", None), ("twaalf", None), ("1,2,3", None)])
def test_numbers_with_a_decimal_comma(text, expected):
    parsed = parse_decimal(text)
    assert (str(parsed) if parsed is not None else None) == expected


def test_form_errors_keep_what_was_typed():
    form = Form({"postcode": " 35 ", "km": "veel"})
    form.postcode("postcode", "uw postcode")
    form.decimal("km", "de afstand", "12,5")
    form.required("naam", "uw naam")
    assert list(form.errors) == ["postcode", "km", "naam"]
    assert form.get("postcode") == "35" and form.get("km") == "veel"


# Where a redirect after signing in could lead a browser to another site, and what a
# browser would make of it: every one of these goes to the default page instead.
OTHER_SITES = [
    "//evil.example", "///evil.example", "https://evil.example/", "http:evil.example",
    "HTTPS://evil.example", "/\\evil.example", "\\\\evil.example", "/\t/evil.example/phish",
    "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", " //evil.example",
    "/%09/evil.example/phish", "/%2F/evil.example", "/%2f%2fevil.example", "%2F%2Fevil.example",
    "/%5Cevil.example", "/%5cevil.example", "/%252F%252Fevil.example", "/%0a/evil.example",
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "evil.example", "reiskosten", "", None, 7, "/\x00/evil.example", "/\x85/evil.example",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("asked", OTHER_SITES, ids=repr)
def test_after_sign_in_never_another_site(asked):
    assert safe_next_path(asked) == "/verklaringen"
    assert safe_next_path(asked, default="/") == "/"


@pytest.mark.parametrize("asked", [
    "/reiskosten", "/steunpunten?postcode=3511%20AB&hulp=", "/verklaringen/ABC-123.pdf",
    "/reiskosten/indienen", "/steunpunten?postcode=3511+AB", "/a/b//c", "/%C3%A9t%C3%A9",
])
def test_after_sign_in_a_page_of_this_site_as_asked(asked):
    assert safe_next_path(asked) == asked
