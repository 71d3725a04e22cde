"""The SEPA credit transfer file of a payout batch: both versions valid against their XML
schema (checked again here with a second validator), the amounts and accounts in it, a
file that does not validate is refused, and a transfer that cannot be written is refused on
its own while the rest of the file is written."""
import io
import re
import tracemalloc
from datetime import date
from importlib.resources import files
from xml.etree import ElementTree

import pytest
import xmlschema
from sepaxml import SepaTransfer

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
    first, second = _payments()
    with pytest.raises(sepa.UnwritableTransfer) as refused:
        sepa.credit_transfer("65f000000000000000000003", 500,
                             {**ACCOUNTS[1], "account_holder": name}, "Reiskosten")
    assert name not in str(refused.value) and "name" in str(refused.value)
    xml = sepa.credit_transfer_file(FUND, [first, ("65f000000000000000000003", 500,
                                                   {**ACCOUNTS[1], "account_holder": name},
                                                   "Reiskosten"), second],
                                    "pain.001.001.09", date(2026, 3, 2))
    assert [e.text for e in _elements(xml, "EndToEndId")] == [
        "65f000000000000000000001", "65f000000000000000000002"]
    assert [e.text for e in _elements(xml, "NbOfTxs")] == ["2", "2"]


def _tree_built(account, payments, schema, execution_date):
    """The file as sepaxml builds it, one element tree, and the ids and time it chose."""
    config = {"name": account.name, "IBAN": account.iban, "batch": True, "currency": "EUR"}
    if account.bic:
        config["BIC"] = account.bic
    tree = SepaTransfer(config, schema=schema)
    for end_to_end_id, cents, holder, description in payments:
        payment = {"name": sepa_text(holder["account_holder"]), "IBAN": holder["iban"],
                   "amount": cents, "description": description, "endtoend_id": end_to_end_id,
                   "execution_date": execution_date}
        if holder.get("bic"):
            payment["BIC"] = holder["bic"]
        tree.add_payment(payment)
    xml = tree.export(validate=False)
    ids = {key: re.search(rf"<{tag}>([^<]*)</{tag}>".encode(), xml).group(1).decode()
           for key, tag in (("msg_id", "MsgId"), ("created_at", "CreDtTm"),
                            ("payment_id", "PmtInfId"))}
    return xml, ids


@pytest.mark.parametrize("schema", sepa.SUPPORTED_SCHEMAS)
@pytest.mark.parametrize("bic", ["ABNANL2A", None])
def test_the_streamed_file_is_the_one_sepaxml_builds_as_a_tree(schema, bic):
    account = FundAccount(name="Reiskostenfonds Mantelzörg", iban=FUND.iban, bic=bic)
    payments = _payments() * 3
    tree, ids = _tree_built(account, payments, schema, date(2026, 3, 2))
    streamed = sepa.credit_transfer_file(account, payments, schema, date(2026, 3, 2), **ids)
    if bic:
        assert streamed == tree   # byte for byte
    else:   # an empty element: "<FinInstnId />" from the tree, "<FinInstnId/>" streamed
        assert ElementTree.canonicalize(streamed) == ElementTree.canonicalize(tree)


def test_a_header_that_does_not_match_the_transfers_is_refused():
    out = io.BytesIO()
    written = sepa.TransferFile(FUND, "pain.001.001.09", date(2026, 3, 2), 2, 1863, out)
    written.open()
    written.add(*_payments()[0])
    with pytest.raises(sepa.InvalidTransferFile):
        written.close()


def test_an_invalid_transfer_is_refused_while_it_is_written():
    payments = [(claim_id, cents, {**account, "iban": "not-an-iban-NL02RABO"}, text)
                for claim_id, cents, account, text in _payments()]
    with pytest.raises(sepa.InvalidTransferFile) as refused:
        sepa.credit_transfer_file(FUND, payments, "pain.001.001.09", date(2026, 3, 2))
    assert "RABO" not in str(refused.value)


class _Counted:
    """Where a file is written: only its size is kept."""

    def __init__(self):
        self.size = 0

    def write(self, data):
        self.size += len(data)


def _peak_writing(transfers):
    account = {"iban": "NL02RABO0123456789", "bic": "RABONL2U", "account_holder": "Jan Jansen"}
    out = _Counted()
    tracemalloc.start()
    try:
        with sepa.TransferFile(FUND, "pain.001.001.09", date(2026, 3, 2), transfers,
                               transfers * 1863, out) as written:
            for number in range(transfers):
                written.add(f"65f{number:021d}", 1863, account, "Reiskosten")
        return tracemalloc.get_traced_memory()[1], out.size
    finally:
        tracemalloc.stop()


def test_the_writer_holds_a_transfer_never_the_file():
    # a writer that kept the transfers or the file would hold hundreds of kilobytes at 5,000
    small_peak, small_size = _peak_writing(500)
    large_peak, large_size = _peak_writing(5_000)
    assert large_size > 9 * small_size   # ten times the file
    assert large_size > 4 * large_peak   # far more written than ever held
    assert large_peak < 2 * small_peak, (small_peak, large_peak)


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
