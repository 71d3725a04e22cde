"""The gateway's side of declarations without services: scalars, input errors, the PDF."""
from gateway import printable
from gateway.executor import run_query
from gateway.jwks import PublicKeys
from tests.support import pdf_text

REQUEST = """mutation($input: DeclarationRequestInput!) { requestDeclaration(input: $input) { id } }"""


def _input(**changes):
    data = {"municipalityCode": "GM0363",
            "caregiver": {"bsn": "111222333", "name": "A", "postcode": "1012 AB"},
            "careRecipient": {"name": "B", "postcode": "1012 AB", "relationship": "parent"},
            "hoursPerWeek": "12.50", "careSince": "2020-01-01", "purposes": ["OTHER"]}
    data.update(changes)
    return data


def _errors(variables):
    return run_query({"query": REQUEST, "variables": {"input": variables}}, None)["errors"]


def test_values_that_do_not_fit_their_type_name_their_field():
    for change, field in (({"hoursPerWeek": "NaN"}, "input.hoursPerWeek"),
                          ({"hoursPerWeek": 1.5}, "input.hoursPerWeek"),
                          ({"careSince": "2020-02-30"}, "input.careSince"),
                          ({"purposes": ["OTHER", "NOPE"]}, "input.purposes.1")):
        [error] = _errors(_input(**change))
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


def test_a_bsn_sent_as_a_number_is_not_repeated_in_the_error():
    [error] = _errors(_input(caregiver={"bsn": 111222333, "name": "A", "postcode": "1012 AB"}))
    assert error["extensions"]["field"] == "input.caregiver.bsn"
    assert "111222333" not in error["message"]


def test_the_printable_declaration_is_a_pdf_with_its_reference_and_code():
    document = printable.render({
        "reference": "MZV-2026-000042", "municipality_code": "GM0363", "municipality_name": "Amsterdam",
        "purposes": ["PARKING_PERMIT", "CO_TENANCY"], "valid_from": "2026-01-01",
        "valid_until": "2026-12-31", "token": "header.payload.signature",
        "verification_code": "ABCD-EFGH-JKMN"})
    text = pdf_text(document)
    assert document.startswith(b"%PDF")
    for shown in ("MZV-2026-000042", "Amsterdam (GM0363)", "31-12-2026", "Parkeervergunning",
                  "Verificatiecode", "ABCD-EFGH-JKMN"):
        assert shown in text


def test_the_decision_letter_of_a_rejection_and_of_a_revoked_declaration():
    letter = {"reference": "MZV-2026-000043", "decision": "REJECTED",
              "reason": "U zorgt minder dan 8 uur per week.",
              "decided_at": "2026-03-02T10:00:00+00:00",
              "requested_at": "2026-02-01T09:00:00+00:00", "status": "REJECTED",
              "purposes": ["PARKING_PERMIT"], "valid_from": None, "valid_until": None,
              "revoked_at": None, "revocation_reason": None, "municipality_code": "GM0307",
              "municipality_name": "Amersfoort", "caregiver_name": "Anna de Vries"}
    text = " ".join(pdf_text(printable.render_decision_letter(letter)).split())
    for shown in ("Gemeente Amersfoort", "Aan: Anna de Vries", "2 maart 2026", "MZV-2026-000043",
                  "1 februari 2026", "wijzen uw aanvraag af", "minder dan 8 uur per week",
                  "binnen zes weken", "bezwaar maken bij de gemeente Amersfoort"):
        assert shown in text, shown
    assert "geldig van" not in text

    revoked = {**letter, "decision": "ISSUED", "reason": None, "status": "REVOKED",
               "valid_from": "2026-03-02", "valid_until": "2027-03-01",
               "revoked_at": "2026-06-01T08:00:00+00:00", "revocation_reason": "De zorg is gestopt."}
    text = " ".join(pdf_text(printable.render_decision_letter(revoked)).split())
    for shown in ("u krijgt de mantelzorgverklaring", "geldig van 2 maart 2026 tot en met "
                  "1 maart 2027", "Parkeervergunning", "op 1 juni 2026 ingetrokken",
                  "De zorg is gestopt.", "binnen zes weken"):
        assert shown in text, shown


def test_public_keys_are_cached_and_stripped_to_public_fields():
    calls = []

    def fetch():
        calls.append(1)
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                          "kid": "k1", "x": "abc", "d": "never"}]}

    keys = PublicKeys()
    assert keys.get(fetch) == keys.get(fetch) == {"keys": [
        {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "k1", "x": "abc"}]}
    assert len(calls) == 1
