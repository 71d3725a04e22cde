"""Tokens of the contract: who is asking, and what is refused."""
import time

import jwt
import pytest

from common.errors import Forbidden
from gateway.auth import ANONYMOUS, TokenVerifier, Unauthenticated, issue_development_token

SECRET = "unit-test-secret"


@pytest.fixture
def verifier():
    return TokenVerifier({"MANTELZORG_JWT_SECRET": SECRET})


def test_no_header_is_anonymous(verifier):
    assert verifier.principal(None) is ANONYMOUS
    assert not ANONYMOUS.authenticated


def test_a_municipality_token_gives_its_claims(verifier):
    principal = verifier.principal(
        "Bearer " + issue_development_token(SECRET, "municipality", "staff-1", municipality="GM0363"))
    assert (principal.role, principal.sub, principal.municipality) == ("municipality", "staff-1", "GM0363")
    principal.require_municipality("GM0363", "admin")
    with pytest.raises(Forbidden):
        principal.require_municipality("GM0344", "admin")


@pytest.mark.parametrize("header, reason", [
    ("Bearer " + issue_development_token(SECRET, "admin", "a", lifetime_seconds=-10), "expired"),
    ("Bearer " + issue_development_token("another-secret", "admin", "a"), "not valid"),
    ("Bearer " + issue_development_token(SECRET, "superuser", "a"), "no known role"),
    ("Bearer " + issue_development_token(SECRET, "municipality", "a"), "name its municipality"),
    ("Bearer " + jwt.encode({"sub": "a", "role": "admin"}, SECRET, algorithm="HS256"), "not valid"),
    ("Basic dXNlcjpwYXNz", "Bearer"),
])
def test_bad_tokens_are_unauthenticated(verifier, header, reason):
    with pytest.raises(Unauthenticated) as raised:
        verifier.principal(header)
    assert reason in raised.value.message
    assert raised.value.code == "UNAUTHENTICATED"


def test_the_none_algorithm_is_refused(verifier):
    unsigned = jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, None,
                          algorithm="none")
    with pytest.raises(Unauthenticated):
        verifier.principal(f"Bearer {unsigned}")


def test_roles_outside_the_allowed_set_are_forbidden(verifier):
    partner = verifier.principal("Bearer " + issue_development_token(SECRET, "partner", "p"))
    partner.require("partner", "admin")
    with pytest.raises(Forbidden):
        partner.require("admin")
    with pytest.raises(Unauthenticated):
        ANONYMOUS.require("admin")


@pytest.mark.parametrize("claims", [{}, {"bsn": "123456789"}, {"bsn": ""}, {"bsn": "12345"}])
def test_a_caregiver_token_without_a_valid_bsn_is_unauthenticated(verifier, claims):
    header = "Bearer " + issue_development_token(SECRET, "caregiver", "cg", **claims)
    with pytest.raises(Unauthenticated) as raised:
        verifier.principal(header)
    assert "BSN" in raised.value.message and "123456789" not in raised.value.message


def test_a_caregivers_bsn_reaches_the_services_but_not_its_repr(verifier):
    principal = verifier.principal(
        "Bearer " + issue_development_token(SECRET, "caregiver", "cg", bsn="999990019"))
    assert principal.as_actor()["bsn"] == "999990019"
    assert "999990019" not in repr(principal)
    municipality = verifier.principal(
        "Bearer " + issue_development_token(SECRET, "municipality", "m", municipality="GM0363",
                                            bsn="999990019"))
    assert "bsn" not in municipality.as_actor()


def test_the_bsn_claim_name_is_configurable():
    verifier = TokenVerifier({"MANTELZORG_JWT_SECRET": SECRET,
                              "MANTELZORG_JWT_BSN_CLAIM": "urn:nl:bsn"})
    header = "Bearer " + jwt.encode({"sub": "cg", "role": "caregiver", "urn:nl:bsn": "999990019",
                                     "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert verifier.principal(header).bsn == "999990019"


def test_a_token_verified_before_is_refused_once_it_has_expired(verifier):
    token = issue_development_token(SECRET, "partner", "desk-1", lifetime_seconds=1)
    assert verifier.principal(f"Bearer {token}").sub == "desk-1"
    assert verifier.principal(f"Bearer {token}").sub == "desk-1"   # from the kept claims
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.principal(f"Bearer {token}")


def test_a_token_is_not_kept_when_its_signature_does_not_hold(verifier):
    good = issue_development_token(SECRET, "partner", "desk-1")
    assert verifier.principal(f"Bearer {good}").sub == "desk-1"
    forged = issue_development_token("another-secret-of-thirty-two-bytes", "partner", "desk-1")
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="not valid"):
            verifier.principal(f"Bearer {forged}")
