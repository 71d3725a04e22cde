"""The SEPA credit transfer file (ISO 20022 pain.001) of a payout batch, written as a stream:
the group header and the payment information block first (their count and control sum
known before, from a light pass over the batch), then one credit transfer at a time, each
built as a small element and serialized into lxml's incremental writer (``etree.xmlfile``)
and let go. The bytes go to the caller's ``out`` (the fund seals and stores them in parts as
they come) and, on the way, through a validating pull parser with the XML schema of the
file's version (the XSD sepaxml ships), which lets each transfer go once it is checked. So
the writer holds one transfer, never the file or a tree of it, whatever the batch's size.

The output is byte for byte what sepaxml's ``SepaTransfer`` (one batch, one execution date)
writes for the same transfers, message id, creation time and payment information id;
sepaxml still gives those ids and the schemas. pain.001.001.09 is the default;
pain.001.001.03 is there for banks that still want it.

A transfer that cannot be written (a name outside the SEPA character set) is refused on its
own with ``UnwritableTransfer``, before anything of it is written."""
import datetime
import io
from functools import lru_cache
from importlib.resources import files
from typing import NamedTuple

from lxml import etree
from sepaxml.utils import int_to_decimal_str, make_id, make_msg_id
from text_unidecode import unidecode

from common.schemas.travel_costs import sepa_text

SUPPORTED_SCHEMAS = ("pain.001.001.09", "pain.001.001.03")
XSI = "http://www.w3.org/2001/XMLSchema-instance"
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'


class InvalidTransferFile(Exception):
    """The written file does not validate: a bug or a value no bank accepts; never stored."""


class UnwritableTransfer(Exception):
    """One transfer that cannot be in the file; the message says why, without its values."""


class Transfer(NamedTuple):
    """One credit transfer as the file carries it (names transliterated and cut)."""
    end_to_end_id: str
    amount_cents: int
    iban: str
    bic: str | None
    name: str
    description: str


def credit_transfer(end_to_end_id, amount_cents, account, description):
    """The transfer to ``account`` (IBAN, BIC, account holder, decrypted) as the file writes
    it; UnwritableTransfer when the file cannot carry it."""
    try:
        name = sepa_text(account["account_holder"])
    except ValueError:
        raise UnwritableTransfer("the account holder's name has characters a bank "
                                 "transfer cannot carry") from None
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise UnwritableTransfer("the transfer does not meet the rules of a SEPA file")
    return Transfer(end_to_end_id, amount_cents, account["iban"], account.get("bic") or None,
                    unidecode(name)[:70], unidecode(description)[:140])


def _sub(parent, tag, text=None):
    element = etree.SubElement(parent, tag)
    element.text = text
    return element


class TransferFile:
    """One payment information block debited from the fund's ``account``, with ``count``
    credit transfers summing to ``total_cents``, executed on ``execution_date``; written to
    ``out`` (``write(bytes)``) as the transfers are added, validated on the way. Use as a
    context manager, or call ``open`` and ``close``; ``close`` checks that the transfers
    added match the count and sum of the header and that the file is valid."""

    def __init__(self, account, schema, execution_date, count, total_cents, out, *,
                 msg_id=None, created_at=None, payment_id=None):
        if schema not in SUPPORTED_SCHEMAS:
            raise ValueError(f"unsupported file version {schema}")
        self.schema, self.account = schema, account
        self.fund_name = unidecode(account.name)[:70]
        self.execution_date = execution_date.isoformat()
        self.expected = (count, total_cents)
        self.count, self.total = 0, 0
        self.msg_id = msg_id or make_msg_id()
        self.created_at = created_at or datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
        self.payment_id = payment_id or make_id(self.fund_name)
        self._validator = _Validator(schema)
        self._out = _Tee(out, self._validator)
        self._writing = None
        self._stack = []

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self._writing = self._stack = None   # dropped: nothing more is written

    def open(self):
        """Writes everything before the first transfer."""
        self._out.write(DECLARATION)
        self._writing = etree.xmlfile(self._out, encoding="utf-8", close=False, buffered=False)
        writer = self._writing.__enter__()
        self._stack.append(self._writing)
        namespace = f"urn:iso:std:iso:20022:tech:xsd:{self.schema}"
        for tag, nsmap in ((f"{{{namespace}}}Document", {None: namespace, "xsi": XSI}),
                           (f"{{{namespace}}}CstmrCdtTrfInitn", None)):
            element = writer.element(tag, nsmap=nsmap)
            element.__enter__()
            self._stack.append(element)
        self._writer = writer
        writer.write(self._group_header())
        block = writer.element("PmtInf")
        block.__enter__()
        self._stack.append(block)
        writer.write(*self._payment_information())

    def _group_header(self):
        count, total = self.expected
        header = etree.Element("GrpHdr")
        for tag, text in (("MsgId", self.msg_id), ("CreDtTm", self.created_at),
                          ("NbOfTxs", str(count)), ("CtrlSum", int_to_decimal_str(total))):
            _sub(header, tag, text)
        _sub(_sub(header, "InitgPty"), "Nm", self.fund_name)
        return header

    def _payment_information(self):
        """The block's elements before its transfers, as sepaxml orders them."""
        count, total = self.expected
        elements = [etree.Element(tag) for tag in ("PmtInfId", "PmtMtd", "BtchBookg",
                                                   "NbOfTxs", "CtrlSum")]
        for element, text in zip(elements, (self.payment_id, "TRF", "true", str(count),
                                            int_to_decimal_str(total))):
            element.text = text
        kind = etree.Element("PmtTpInf")
        _sub(_sub(kind, "SvcLvl"), "Cd", "SEPA")
        when = etree.Element("ReqdExctnDt")
        if self.schema == "pain.001.001.03":
            when.text = self.execution_date
        else:
            _sub(when, "Dt", self.execution_date)
        debtor = etree.Element("Dbtr")
        _sub(debtor, "Nm", self.fund_name)
        debtor_account = etree.Element("DbtrAcct")
        _sub(_sub(debtor_account, "Id"), "IBAN", self.account.iban)
        agent = etree.Element("DbtrAgt")
        institution = _sub(agent, "FinInstnId")
        if self.account.bic:
            _sub(institution, self._bic_tag, self.account.bic)
        charges = etree.Element("ChrgBr")
        charges.text = "SLEV"
        return [*elements, kind, when, debtor, debtor_account, agent, charges]

    @property
    def _bic_tag(self):
        return "BIC" if self.schema == "pain.001.001.03" else "BICFI"

    def add(self, end_to_end_id, amount_cents, account, description):
        """A credit transfer to ``account`` (IBAN, BIC, account holder, decrypted), written
        at once; UnwritableTransfer (nothing written) when the file cannot carry it."""
        self.write(credit_transfer(end_to_end_id, amount_cents, account, description))

    def write(self, transfer):
        """A ``Transfer`` (from ``credit_transfer``) written at once."""
        element = etree.Element("CdtTrfTxInf")
        _sub(_sub(element, "PmtId"), "EndToEndId", transfer.end_to_end_id)
        _sub(_sub(element, "Amt"), "InstdAmt",
             int_to_decimal_str(transfer.amount_cents)).set("Ccy", "EUR")
        if transfer.bic:
            _sub(_sub(_sub(element, "CdtrAgt"), "FinInstnId"), self._bic_tag, transfer.bic)
        _sub(_sub(element, "Cdtr"), "Nm", transfer.name)
        _sub(_sub(_sub(element, "CdtrAcct"), "Id"), "IBAN", transfer.iban)
        _sub(_sub(element, "RmtInf"), "Ustrd", transfer.description)
        self._writer.write(element)
        self.count += 1
        self.total += transfer.amount_cents

    def close(self):
        """Ends the file; InvalidTransferFile when it is not valid or does not hold what its
        header says."""
        if (self.count, self.total) != self.expected:
            raise InvalidTransferFile("the transfers written do not match the file's count "
                                      "and control sum")
        while self._stack:
            self._stack.pop().__exit__(None, None, None)
        self._validator.close()


class _Tee:
    """The bytes written go to ``out`` and through the validator."""

    def __init__(self, out, validator):
        self.out, self.validator = out, validator

    def write(self, data):
        data = bytes(data)
        self.validator.feed(data)
        self.out.write(data)


class _Validator:
    """A pull parser checking the bytes against the schema as they come; each transfer (and
    every element before it) is let go once it has been checked."""

    def __init__(self, schema):
        self.schema = schema
        self.parser = etree.XMLPullParser(events=("end",), schema=xml_schema(schema),
                                          resolve_entities=False, no_network=True,
                                          huge_tree=True)

    def feed(self, data):
        self._checked(self.parser.feed, data)

    def close(self):
        self._checked(self.parser.close)

    def _checked(self, step, *args):
        try:
            step(*args)
            for _event, element in self.parser.read_events():
                _let_go(element)
        except etree.XMLSyntaxError as error:
            raise _invalid(error, self.schema) from None


def _let_go(element):
    element.clear(keep_tail=True)
    while element.getprevious() is not None:
        del element.getparent()[0]


def _invalid(error, schema):
    # Where and what kind, never the message: it quotes the value (a name, an IBAN).
    last = error.error_log.last_error
    kind = f"not valid {schema}" if last is not None and last.domain_name == "SCHEMASV" \
        else "not well-formed XML"
    what = last.type_name if last is not None else "error"
    return InvalidTransferFile(f"{kind}: {what} at line {error.lineno}")


def credit_transfer_file(account, payments, schema, execution_date, **ids):
    """A whole file of ``payments`` (end-to-end id, cents, account, description) at once;
    those that cannot be written are left out (as a payout holds them)."""
    transfers = []
    for payment in payments:
        try:
            transfers.append(credit_transfer(*payment))
        except UnwritableTransfer:
            continue
    out = io.BytesIO()
    with TransferFile(account, schema, execution_date, len(transfers),
                      sum(t.amount_cents for t in transfers), out, **ids) as written:
        for transfer in transfers:
            written.write(transfer)
    return out.getvalue()


@lru_cache(maxsize=None)
def xml_schema(schema):
    if schema not in SUPPORTED_SCHEMAS:
        raise ValueError(f"unsupported file version {schema}")
    return etree.XMLSchema(etree.parse(str(files("sepaxml") / "schemas" / f"{schema}.xsd")))


def validate(xml, schema):
    """Raises InvalidTransferFile unless ``xml`` (bytes) is valid against the schema, read
    as a stream, each element let go once checked."""
    validator = _Validator(schema)
    for start in range(0, len(xml), 64 * 1024):
        validator.feed(xml[start:start + 64 * 1024])
    validator.close()
