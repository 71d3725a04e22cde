"""The SEPA credit transfer file of a payout batch: both versions valid against their XML
schema (checked again here with a second validator), the amounts and accounts in it, and a
file that does not validate is refused."""
from datetime import date
from importlib.resources import files
from xml.etree import ElementTree

import pytest
import xmlschema

from services.travel_costs import domain, payouts
from services.travel_costs.dependencies import FundAccount

FUND = FundAccount(name="Reiskostenfonds Mantelzorg", iban="NL91ABNA0417164300", bic="ABNANL2A")
ACCOUNTS = [{"iban": "NL02RABO0123456789", "bic": "RABONL2U", "account_holder": "Ånna de Vriës"},
            {"iban": "DE89370400440532013000", "bic": None, "account_holder": "Jan Jansen"}]


def _payments():
    claims = [{"_id": "65f000000000000000000001", "amount_cents": 1863},
              {"_id": "65f000000000000000000002", "amount_cents": 150000}]
    return [domain.payment(claim, account) for claim, account in zip(claims, ACCOUNTS)]


def _elements(xml, name):
    return [e for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}" + name)]


@pytest.mark.parametrize("schema", payouts.SUPPORTED_SCHEMAS)
def test_the_file_is_valid_against_its_version_s_schema(schema):
    xml = payouts.credit_transfer_file(FUND, _payments(), schema, date(2026, 3, 2))
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
    xml = payouts.credit_transfer_file(FUND, _payments(), "pain.001.001.09", date(2026, 3, 2))
    broken = xml.replace(b"NL02RABO0123456789", b"not-an-iban-NL02RABO")
    with pytest.raises(payouts.InvalidTransferFile) as refused:
        payouts.validate(broken, "pain.001.001.09")
    assert "RABO" not in str(refused.value)
    with pytest.raises(payouts.InvalidTransferFile):
        payouts.validate(b"<Document", "pain.001.001.09")


def test_only_the_supported_versions():
    with pytest.raises(ValueError):
        payouts.xml_schema("pain.001.001.02")
