"""The search the scan after the run uses: it finds what the tests made in any spacing, and
says where without repeating it."""
from tests.support import PersonalData, personal_data_in

SENT = PersonalData()
SENT.bsns.add("111222333")
SENT.ibans.add("NL91ABNA0417164300")
SENT.emails.add("anna.devries@example.nl")


def test_a_bsn_is_found_in_any_spacing_and_only_standing_alone():
    for text in ("bsn=111222333,", "'111 222 333'", "111.222.333", "1112-22333",
                 '{"value": "1 1 1 2 2 2 3 3 3"}'):
        assert personal_data_in(text, SENT) == ["a BSN (11…)"], text
    for text in ("1111222333", "11122233", "111222334", "[redacted]"):
        assert personal_data_in(text, SENT) == [], text


def test_an_iban_and_an_email_are_found_in_any_spacing_and_case():
    assert personal_data_in("iban NL91 ABNA 0417 1643 00 x", SENT) == ["an IBAN (NL…)"]
    assert personal_data_in("nl91abna0417164300", SENT) == ["an IBAN (NL…)"]
    assert personal_data_in("to: Anna.DeVries@Example.nl", SENT) == ["an e-mail address (an…)"]
    assert personal_data_in("anna@example.nl", SENT) == []


def test_a_name_is_found_in_any_case_and_spacing():
    sent = PersonalData()
    sent.names.add("Anna de Vries")
    for text in ("naam: Anna de Vries", "ANNA DE VRIES", "anna  de\nvries", '"Anna de Vries"'):
        assert personal_data_in(text, sent) == ["a name (An…)"], text
    assert personal_data_in("Anna Vries", sent) == []
