"""The SEPA credit transfer file (ISO 20022 pain.001) of a payout batch: written with
sepaxml as one element tree, then checked against the XML schema of its version, which
sepaxml ships, while it is read back once as a stream (no second tree), before the fund
stores it.

pain.001.001.09 is the default; pain.001.001.03 is there for banks that still want it.
lxml (libxml2) checks the schema in about half a second for 100,000 transfers, where the
pure-Python xmlschema that sepaxml would use takes half a minute.

A transfer that cannot be written (a name outside the SEPA character set, an account that
sepaxml refuses) is refused on its own with ``UnwritableTransfer``: the rest of the file
is written without it."""
import io
from functools import lru_cache
from importlib.resources import files

from lxml import etree
from sepaxml import SepaTransfer

from common.schemas.travel_costs import sepa_text

SUPPORTED_SCHEMAS = ("pain.001.001.09", "pain.001.001.03")


class InvalidTransferFile(Exception):
    """The written file does not validate: a bug or a value no bank accepts; never stored."""


class UnwritableTransfer(Exception):
    """One transfer that cannot be in the file; the message says why, without its values."""


class TransferFile:
    """One payment information block debited from the fund's ``account``, with one credit
    transfer per ``add``, executed on ``execution_date``."""

    def __init__(self, account, schema, execution_date):
        config = {"name": account.name, "IBAN": account.iban, "batch": True, "currency": "EUR"}
        if account.bic:
            config["BIC"] = account.bic
        self.schema = schema
        self.execution_date = execution_date
        self.transfer = SepaTransfer(config, schema=schema)
        self.count = 0

    def add(self, end_to_end_id, amount_cents, account, description):
        """A credit transfer to ``account`` (IBAN, BIC, account holder, decrypted)."""
        try:
            name = sepa_text(account["account_holder"])
        except ValueError:
            raise UnwritableTransfer("the account holder's name has characters a bank "
                                     "transfer cannot carry") from None
        payment = {"name": name, "IBAN": account["iban"], "amount": amount_cents,
                   "description": description, "endtoend_id": end_to_end_id,
                   "execution_date": self.execution_date}
        if account.get("bic"):
            payment["BIC"] = account["bic"]
        try:
            self.transfer.add_payment(payment)
        except Exception:   # sepaxml's own checks: its message may quote the value
            raise UnwritableTransfer("the transfer does not meet the rules of a SEPA "
                                     "file") from None
        self.count += 1

    def export(self):
        """The file's bytes, valid against its schema; the element tree is let go."""
        xml = self.transfer.export(validate=False)
        self.transfer = None
        validate(xml, self.schema)
        return xml


def credit_transfer_file(account, payments, schema, execution_date):
    """A whole file of ``payments`` (end-to-end id, cents, account, description) at once."""
    written = TransferFile(account, schema, execution_date)
    for payment in payments:
        written.add(*payment)
    return written.export()


@lru_cache(maxsize=None)
def xml_schema(schema):
    if schema not in SUPPORTED_SCHEMAS:
        raise ValueError(f"unsupported file version {schema}")
    return etree.XMLSchema(etree.parse(str(files("sepaxml") / "schemas" / f"{schema}.xsd")))


def validate(xml, schema):
    """Raises InvalidTransferFile unless ``xml`` (bytes) is valid against the schema. The
    file is read as a stream, validated while it is parsed, each element let go once read."""
    checker = xml_schema(schema)
    try:
        for _event, element in etree.iterparse(io.BytesIO(xml), events=("end",),
                                               schema=checker, resolve_entities=False,
                                               no_network=True, huge_tree=True):
            element.clear(keep_tail=True)
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as error:
        # Where and what kind, never the message: it quotes the value (a name, an IBAN).
        last = error.error_log.last_error
        kind = f"not valid {schema}" if last is not None and last.domain_name == "SCHEMASV" \
            else "not well-formed XML"
        what = last.type_name if last is not None else "error"
        raise InvalidTransferFile(f"{kind}: {what} at line {error.lineno}") from None
