"""Declaration rules without I/O, and the keys that protect personal data."""
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from cryptography.exceptions import InvalidTag

from common.crypto import DataCipher, Keys, KeyedHash
from common.errors import BadUserInput, Conflict, Forbidden, NotFound
from common.events import new_envelope
from services.declaration import domain, tokens

STATUSES = (None, *domain.EVENT_OF)
ACTIONS = ("request", "issue", "reject", "revoke", "expire")


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_only_the_table_s_transitions_are_allowed(status, action):
    allowed = {(None, "request"): "REQUESTED", ("REQUESTED", "issue"): "ISSUED",
               ("REQUESTED", "reject"): "REJECTED", ("ISSUED", "revoke"): "REVOKED",
               ("ISSUED", "expire"): "EXPIRED"}
    if (status, action) in allowed:
        assert domain.next_status(status, action) == allowed[(status, action)]
    else:
        with pytest.raises(Conflict):
            domain.next_status(status, action)


def test_national_criteria_and_local_choices():
    national = domain.Criteria.of(None)
    today = date(2026, 6, 15)
    assert domain.unmet_criteria(date(2026, 3, 14), Decimal("8.5"), national, today) == []
    assert domain.unmet_criteria(date(2026, 3, 15), Decimal("8.5"), national, today) == ["CARE_DURATION"]
    assert domain.unmet_criteria(date(2020, 1, 1), Decimal("8"), national, today) == ["HOURS_PER_WEEK"]
    local = domain.Criteria.of({"min_hours_per_week": "4", "min_care_months": 0, "validity_months": 24,
                                "purposes": ["PARKING_PERMIT"]})
    assert domain.unmet_criteria(date(2026, 6, 14), Decimal("5"), local, today) == []
    assert domain.unsupported_purposes(["PARKING_PERMIT", "CO_TENANCY"], local) == ["CO_TENANCY"]
    assert domain.validity(local, today) == (today, date(2028, 6, 14))
    assert domain.validity(national, date(2024, 2, 29)) == (date(2024, 2, 29), date(2025, 2, 27))


def test_references_and_verification_codes():
    assert domain.reference(2026, 123) == "MZV-2026-000123"
    codes = {domain.new_verification_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(domain.normalise_code(c)) == 12 for c in codes)
    assert domain.normalise_code("abcd-efgh-jkmn") == "ABCDEFGHJKMN"


def _declaration(**changes):
    document = {"_id": "d1", "reference": "MZV-2026-000001", "status": "ISSUED",
                "municipality_code": "GM0363", "purposes": ["PARKING_PERMIT"],
                "hours_per_week": "12", "care_since": "2020-01-01", "valid_from": "2026-01-01",
                "valid_until": "2026-12-31", "token": "signed", "caregiver_key": "h",
                "personal": {"kid": "k", "nonce": "n", "ct": "c"}, "verification_hash": "v",
                "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "history": []}
    document.update(changes)
    return document


def test_the_check_answers_validity_and_nothing_personal():
    answer = domain.check_answer(_declaration(), "PARKING_PERMIT", date(2026, 12, 31))
    assert answer == {"valid": True, "status": "ISSUED", "valid_until": "2026-12-31",
                      "purpose_accepted": True, "municipality_code": "GM0363"}
    assert domain.check_answer(_declaration(), "CO_TENANCY", date(2026, 6, 1))["purpose_accepted"] is False
    assert domain.check_answer(_declaration(), "PARKING_PERMIT", date(2027, 1, 1))["valid"] is False
    revoked = domain.check_answer(_declaration(status="REVOKED"), "PARKING_PERMIT", date(2026, 6, 1))
    assert revoked["valid"] is False and revoked["purpose_accepted"] is False


OWNER = {"role": "caregiver", "sub": "cg-1", "caregiver_key": "h"}
OTHER_CAREGIVER = {"role": "caregiver", "sub": "cg-1", "caregiver_key": "someone else"}
HOME = {"role": "municipality", "municipality": "GM0363"}
ELSEWHERE = {"role": "municipality", "municipality": "GM0344"}
ADMIN = {"role": "admin", "sub": "a"}


def test_views_and_events_carry_no_personal_data():
    document = _declaration()
    for actor in (OWNER, HOME, ADMIN, ELSEWHERE):
        shown = domain.view(document, actor, verification_code="CODE")
        assert not {"personal", "caregiver_key", "verification_hash", "owner"} & set(shown)
    # the code to the owner and the issuing municipality; the token also to admin
    assert {name: (domain.view(document, actor, "CODE")["verification_code"],
                   domain.view(document, actor, "CODE")["token"])
            for name, actor in (("owner", OWNER), ("home", HOME), ("admin", ADMIN),
                                ("elsewhere", ELSEWHERE), ("other", OTHER_CAREGIVER))} == {
        "owner": ("CODE", "signed"), "home": ("CODE", "signed"), "admin": (None, "signed"),
        "elsewhere": (None, None), "other": (None, None)}
    envelope = new_envelope("declaration.issued", domain.event_payload(document), "c", "declaration")
    assert set(envelope.payload) == {"id", "reference", "status", "municipality_code", "purposes",
                                     "valid_from", "valid_until"}


def test_an_event_from_before_the_upgrade_is_read_without_its_owner():
    envelope = new_envelope("declaration.issued", domain.event_payload(_declaration()), "c",
                            "declaration")
    old = envelope.model_copy(update={"payload": {**envelope.payload, "owner": "cg-1"}})
    assert old.parsed_payload().reference == "MZV-2026-000001"


def test_ownership_follows_the_bsn_not_who_filed_it():
    document = _declaration()
    for actor in (OWNER, HOME, ADMIN):
        assert domain.readable(actor, document) is document
    for actor in (OTHER_CAREGIVER, {"role": "caregiver", "sub": "cg-1"}, ELSEWHERE,
                  {"role": "partner"}):
        with pytest.raises(NotFound) as raised:
            domain.readable(actor, document)
        assert raised.value.message == "no such declaration"
    with pytest.raises(NotFound) as unknown:
        domain.readable(OWNER, None)
    assert unknown.value.message == "no such declaration"
    with pytest.raises(Forbidden):      # admin reads it, but neither prints nor renews
        domain.require_owner_or_issuer(ADMIN, document)
    domain.require_owner_or_issuer(OWNER, document)
    domain.require_owner_or_issuer(HOME, document)
    with pytest.raises(Forbidden):
        domain.may_decide(OWNER, "GM0363")


def test_the_table_says_who_may_make_each_step_and_what_it_needs():
    filed = {"municipality_code": "GM0363", "caregiver_key": "h"}
    domain.may_make("request", OWNER, filed)
    domain.may_make("request", HOME, filed)
    for actor in (OTHER_CAREGIVER, ELSEWHERE, ADMIN, {"role": "partner"}):
        with pytest.raises(Forbidden):
            domain.may_make("request", actor, filed)
    for action in ("issue", "reject", "revoke"):
        domain.may_make(action, HOME, _declaration())
        domain.may_make(action, ADMIN, _declaration())
        for actor in (OWNER, ELSEWHERE, domain.SYSTEM):
            with pytest.raises(Forbidden):
                domain.may_make(action, actor, _declaration())
    domain.may_make("expire", domain.SYSTEM, _declaration())
    for actor in (HOME, ADMIN):
        with pytest.raises(Forbidden):
            domain.may_make("expire", actor, _declaration())
    for action in ("reject", "revoke"):
        with pytest.raises(BadUserInput) as raised:
            domain.required_reason(action, "  ")
        assert raised.value.field == "reason"
    assert domain.required_reason("issue", "  ") is None
    assert domain.required_reason("revoke", " moved ") == "moved"


def test_the_verification_code_is_kept_encrypted_and_shown_again(tmp_path):
    keys = Keys({"DATA_DIR": str(tmp_path)}, environ={})
    code, fields = domain.new_code(keys, "d1", "MZV-2026-000001")
    document = _declaration(**fields)
    assert code not in str(fields) and domain.normalise_code(code) not in str(fields)
    assert fields["verification_hash"] == domain.code_hash(keys, "MZV-2026-000001",
                                                           code.lower().replace("-", ""))
    assert domain.revealed_code(keys, OWNER, document) == code
    assert domain.revealed_code(keys, HOME, document) == code
    assert domain.revealed_code(keys, ADMIN, document) is None
    assert domain.revealed_code(keys, OTHER_CAREGIVER, document) is None
    # bound to its record and field: moved elsewhere it does not decrypt
    with pytest.raises(InvalidTag):
        domain.revealed_code(keys, OWNER, _declaration(_id="d2", **fields))
    # a declaration filed before codes were kept shows none until the code is renewed
    assert domain.revealed_code(keys, OWNER, _declaration()) is None


def test_token_claims_are_limited_to_reference_purposes_validity_municipality():
    claims = tokens.claims(_declaration())
    assert set(claims) == {"iss", "reference", "purposes", "municipality", "valid_from",
                           "valid_until", "nbf", "exp"}
    assert claims["exp"] == int(datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp())


def test_data_key_rotation_keeps_old_ciphertexts_readable():
    old = DataCipher([("k1", b"\x01" * 32)])
    sealed = old.encrypt({"bsn": "111222333"}, context="d1")
    assert "111222333" not in str(sealed) and sealed["kid"] == "k1"
    rotated = DataCipher([("k2", b"\x02" * 32), ("k1", b"\x01" * 32)])
    assert rotated.decrypt(sealed, context="d1") == {"bsn": "111222333"}
    assert rotated.needs_rotation(sealed)
    assert rotated.encrypt({"x": 1})["kid"] == "k2"
    with pytest.raises(InvalidTag):
        rotated.decrypt(sealed, context="another record")
    with pytest.raises(LookupError):
        DataCipher([("k3", b"\x03" * 32)]).decrypt(sealed, context="d1")


def test_keyed_hash_and_development_keys(tmp_path):
    hashed = KeyedHash(b"k" * 32)
    assert hashed("bsn", "111222333") == hashed("bsn", "111222333") != KeyedHash(b"j" * 32)("bsn", "111222333")
    assert "111222333" not in hashed("bsn", "111222333")
    config = {"DATA_DIR": str(tmp_path)}
    first, again = Keys(config, environ={}), Keys(config, environ={})
    assert first.hash("x") == again.hash("x")
    assert first.signer.jwks() == again.signer.jwks()
    assert (tmp_path / "keys" / "data-key.json").stat().st_mode & 0o077 == 0
    other = Keys({"DATA_DIR": str(tmp_path / "elsewhere")}, environ={})
    assert other.hash("x") != first.hash("x")


def test_development_keys_are_refused_with_a_reference_database(tmp_path):
    with pytest.raises(RuntimeError, match="MANTELZORG_DATA_KEY must be set"):
        Keys({"DATA_DIR": str(tmp_path), "MONGO_URI": "mongodb://db.internal:27017/"}, environ={})
