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
