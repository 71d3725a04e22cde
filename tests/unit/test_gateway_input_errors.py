"""Input that does not fit the schema is named by its path and the rule it breaks, and no
error repeats what the client sent: not in variables, not in values written in the query."""
import json

import pytest

from gateway.executor import run_query

REQUEST = "mutation($input: DeclarationRequestInput!) { requestDeclaration(input: $input) { id } }"
BSN = "111 222 333"
EMAIL = "someone.private@example.nl"
IBAN = "NL91 ABNA 0417 1643 00"
SENT = ("111", "222", "333", "someone.private", "ABNA", "0417")


def _input(**changes):
    data = {"municipalityCode": "GM0363",
            "caregiver": {"bsn": BSN, "name": "A", "postcode": "1012 AB", "email": EMAIL},
            "careRecipient": {"name": "B", "postcode": "1012 AB", "relationship": "parent"},
            "hoursPerWeek": "12.50", "careSince": "2020-01-01", "purposes": ["OTHER"]}
    data.update(changes)
    return data


def _errors(query, variables=None):
    answer = run_query({"query": query, "variables": variables}, None)
    assert answer.get("data") is None
    text = json.dumps(answer)
    for part in SENT:
        assert part not in text, f"the answer repeats {part!r}"
    return [(e["message"], e["extensions"]) for e in answer["errors"]]


def _fault(field, rule):
    return (f"{field}: {rule}", {"code": "BAD_USER_INPUT", "field": field})


@pytest.mark.parametrize("changes, field, rule", [
    ({"caregiver": {"bsn": BSN, "postcode": "1012 AB", "email": EMAIL}},
     "input.caregiver.name", "required"),
    ({"caregiver": {"bsn": BSN, "name": None, "postcode": "1012 AB", "email": EMAIL}},
     "input.caregiver.name", "required"),
    ({"caregiver": {"bsn": 111222333, "name": "A", "postcode": "1012 AB", "email": EMAIL}},
     "input.caregiver.bsn", "must be a string"),
    ({"caregiver": [BSN, EMAIL]}, "input.caregiver", "must be an object (CaregiverInput)"),
    ({"purposes": ["OTHER", EMAIL]}, "input.purposes.1", "must be one of PARKING_PERMIT, "
     "CARE_HOUSING, CO_TENANCY, HOUSING_URGENCY, JOB_SEEKING_EXEMPTION, TRAVEL_COST_FUND, OTHER"),
    ({"hoursPerWeek": IBAN}, "input.hoursPerWeek",
     'must be a decimal number written as a string, such as "12.34"'),
    ({"hoursPerWeek": 1.5}, "input.hoursPerWeek",
     'must be a decimal number written as a string, such as "12.34"'),
    ({"careSince": "2020-02-30"}, "input.careSince", "must be a date, YYYY-MM-DD"),
    ({"iban": IBAN}, "input", "has a field that DeclarationRequestInput does not define (it has "
     "municipalityCode, caregiver, careRecipient, hoursPerWeek, careSince, purposes)"),
])
def test_a_variable_that_does_not_fit_is_named_by_path_and_rule(changes, field, rule):
    assert _errors(REQUEST, {"input": _input(**changes)}) == [_fault(field, rule)]


def test_a_missing_or_null_variable_is_required():
    assert _errors(REQUEST, {}) == [_fault("input", "required")]
    assert _errors(REQUEST, {"input": None}) == [_fault("input", "required")]


def test_every_fault_of_a_variable_is_named():
    faults = _errors(REQUEST, {"input": _input(
        caregiver={"bsn": BSN, "postcode": "1012 AB"}, purposes=["NOPE"], careSince=EMAIL)})
    assert [extensions["field"] for _, extensions in faults] == [
        "input.caregiver.name", "input.careSince", "input.purposes.0"]


def _literal(caregiver='{bsn: "%s", name: "A", postcode: "1012 AB", email: "%s"}' % (BSN, EMAIL),
             hours='"12.50"', since='"2020-01-01"', purposes="[OTHER]"):
    return ('mutation { requestDeclaration(input: {municipalityCode: "GM0363", caregiver: '
            f'{caregiver}, careRecipient: {{name: "B", postcode: "1012 AB", relationship: "p"}}, '
            f'hoursPerWeek: {hours}, careSince: {since}, purposes: {purposes}}}) {{ id }} }}')


@pytest.mark.parametrize("query, field, rule", [
    (_literal(caregiver='{bsn: "%s", postcode: "1012 AB", email: "%s"}' % (BSN, EMAIL)),
     "input.caregiver.name", "required"),
    (_literal(caregiver='{bsn: 111222333, name: "A", postcode: "1012 AB"}'),
     "input.caregiver.bsn", "must be a string"),
    (_literal(hours=f'"{IBAN}"'), "input.hoursPerWeek",
     'must be a decimal number written as a string, such as "12.34"'),
    (_literal(since=f'"{EMAIL}"'), "input.careSince", "must be a date, YYYY-MM-DD"),
    (_literal(purposes=f'[OTHER, "{EMAIL}"]'), "input.purposes.1", "must be one of "
     "PARKING_PERMIT, CARE_HOUSING, CO_TENANCY, HOUSING_URGENCY, JOB_SEEKING_EXEMPTION, "
     "TRAVEL_COST_FUND, OTHER"),
    (_literal(caregiver='{bsn: "%s", name: "A", postcode: "1012 AB", iban: "%s"}' % (BSN, IBAN)),
     "input.caregiver", "has a field that CaregiverInput does not define (it has bsn, name, "
     "postcode, email)"),
    ('{ supportPoints(first: "%s") { total } }' % EMAIL, "first",
     "must be a whole number from -2147483648 to 2147483647"),
    ("{ supportPoint { id } }", "id", "required"),
    ('{ supportPoint(id: null) { id } }', "id", "required"),
    ('query($n: Int = "%s") { supportPoints(first: $n) { total } }' % EMAIL, "n",
     "must be a whole number from -2147483648 to 2147483647"),
    ('{ health { status @include(if: "%s") } }' % EMAIL, "if", "must be true or false"),
])
def test_a_value_written_in_the_query_is_named_by_path_and_rule(query, field, rule):
    assert _errors(query) == [_fault(field, rule)]


def test_a_syntax_error_does_not_quote_the_query():
    [(message, extensions)] = _errors('{ supportPoints(postcode: "%s" "%s") }' % (BSN, EMAIL))
    assert message == "Syntax Error: Expected Name, found String."
    assert extensions == {"code": "BAD_USER_INPUT"}


def test_other_faults_of_the_query_keep_graphqls_own_words():
    [(message, extensions)] = _errors(
        "query($m: String) { supportPointHistory(id: $m) { version } }", {})
    assert message == ("Variable '$m' of type 'String' used in position expecting type 'ID!'.")
    assert extensions == {"code": "BAD_USER_INPUT"}
