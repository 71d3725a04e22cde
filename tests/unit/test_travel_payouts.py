"""The SEPA credit transfer file of a payout batch: both versions valid against their XML
schema (checked again here with a second validator), the amounts and accounts in it, a
file that does not validate is refused, and a transfer that cannot be written is refused on
its own while the rest of the file is written."""
from datetime import date
from importlib.resources import files
from xml.etree import ElementTree

import pytest
import xmlschema

from common.schemas.travel_costs import TravelClaimInput, sepa_text
from services.travel_costs import sepa
from services.travel_costs.dependencies import FundAccount

FUND = FundAccount(name="Reiskostenfonds Mantelzorg", iban="NL91ABNA0417164300", bic="ABNANL2A")
ACCOUNTS = [{"iban": "NL02RABO0123456789", "bic": "RABONL2U", "account_holder": "Ånna de Vriës"},
            {"iban": "DE89370400440532013000", "bic": None, "account_holder": "Jan Jansen"}]


def _payments():
    claims = [("65f000000000000000000001", 1863), ("65f000000000000000000002", 150000)]
    return [(claim_id, cents, account, f"Reiskostenfonds mantelzorg, declaratie {claim_id}")
            for (claim_id, cents), account in zip(claims, ACCOUNTS)]


def _elements(xml, name):
    return [e for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}" + name)]


@pytest.mark.parametrize("schema", sepa.SUPPORTED_SCHEMAS)
def test_the_file_is_valid_against_its_version_s_schema(schema):
    xml = sepa.credit_transfer_file(FUND, _payments(), schema, date(2026, 3, 2))
    xmlschema.XMLSchema(str(files("sepaxml") / "schemas" / f"{schema}.xsd")).validate(xml.decode())
    assert f"urn:iso:std:iso:20022:tech:xsd:{schema}".encode() in xml
    assert [e.text for e in _elements(xml, "CtrlSum")] == ["1518.63", "1518.63"]
    assert [e.text for e in _elements(xml, "NbOfTxs")] == ["2", "2"]
    assert [e.text for e in _elements(xml, "InstdAmt")] == ["18.63", "1500.00"]
    assert [e.text for e in _elements(xml, "EndToEndId")] == [
        "65f000000000000000000001", "65f000000000000000000002"]
    assert [e.text for e in _elements(xml, "IBAN")] == [
        "NL91ABNA0417164300", "NL02RABO0123456789", "DE89370400440532013000"]
    bic = "BICFI" if schema.endswith(".09") else "BIC"
    assert [e.text for e in _elements(xml, bic)] == ["ABNANL2A", "RABONL2U"]
    # Names in the characters every bank accepts.
    assert "Anna de Vries" in [e.text for e in _elements(xml, "Nm")]
    if schema.endswith(".09"):
        assert [e.text for e in _elements(xml, "Dt")] == ["2026-03-02"]


def test_a_file_that_does_not_validate_is_refused_without_quoting_values():
    xml = sepa.credit_transfer_file(FUND, _payments(), "pain.001.001.09", date(2026, 3, 2))
    broken = xml.replace(b"NL02RABO0123456789", b"not-an-iban-NL02RABO")
    with pytest.raises(sepa.InvalidTransferFile) as refused:
        sepa.validate(broken, "pain.001.001.09")
    assert "RABO" not in str(refused.value)
    with pytest.raises(sepa.InvalidTransferFile):
        sepa.validate(b"<Document", "pain.001.001.09")


def test_only_the_supported_versions():
    with pytest.raises(ValueError):
        sepa.xml_schema("pain.001.001.02")


@pytest.mark.parametrize("name", ["A. de Vries\x01", "Jan\u200bJansen", "Jansen & Zn", "\t", "~"])
def test_a_transfer_that_cannot_be_written_is_refused_alone_and_the_rest_is_written(name):
    written = sepa.TransferFile(FUND, "pain.001.001.09", date(2026, 3, 2))
    first, second = _payments()
    written.add(*first)
    with pytest.raises(sepa.UnwritableTransfer) as refused:
        written.add("65f000000000000000000003", 500,
                    {**ACCOUNTS[1], "account_holder": name}, "Reiskosten")
    assert name not in str(refused.value) and "name" in str(refused.value)
    written.add(*second)
    xml = written.export()
    assert [e.text for e in _elements(xml, "EndToEndId")] == [
        "65f000000000000000000001", "65f000000000000000000002"]
    assert [e.text for e in _elements(xml, "NbOfTxs")] == ["2", "2"]


def _claim_input(holder):
    return {"declarationReference": "MZ-1", "iban": "NL91ABNA0417164300",
            "accountHolder": holder,
            "trips": [{"date": "2026-01-05", "fromPostcode": "1012 AB", "toPostcode": "3511 AB",
                       "distanceKm": "40.5", "returnTrip": True, "mode": "CAR"}]}


@pytest.mark.parametrize("holder", ["A. de Vries\x01", "Jan\u0007", "Jansen & Zn", "#1"])
def test_a_claim_s_account_holder_outside_the_sepa_characters_is_refused_without_echo(holder):
    from pydantic import ValidationError

    from common.errors import bad_input_from_validation

    with pytest.raises(ValidationError) as refused:
        TravelClaimInput.model_validate(_claim_input(holder))
    error = bad_input_from_validation(refused.value, "input")
    assert error.field == "input.accountHolder"
    assert holder.strip() not in str(error)


@pytest.mark.parametrize("holder, written", [("Ånna de Vriës", "Anna de Vries"),
                                              ("Jan-Willem O'Brien (zoon)", "Jan-Willem O'Brien (zoon)"),
                                              ("Sørensen Straße", "Sorensen Strasse")])
def test_names_with_letters_of_other_alphabets_pass_and_are_written_transliterated(holder, written):
    assert TravelClaimInput.model_validate(_claim_input(holder)).account_holder == holder
    assert sepa_text(holder) == written
