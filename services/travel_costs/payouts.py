"""The SEPA credit transfer file (ISO 20022 pain.001) of a payout batch: written with
sepaxml, then validated against the XML schema of its version, which sepaxml ships, before
the fund stores it.

pain.001.001.09 is the default; pain.001.001.03 is there for banks that still want it.
sepaxml can validate while it exports, with the pure-Python xmlschema; lxml (libxml2) checks
the same schema file in about half a second for 100,000 transfers, where xmlschema takes
half a minute, so the file is checked with lxml."""
from functools import lru_cache
from importlib.resources import files

from lxml import etree
from sepaxml import SepaTransfer

SUPPORTED_SCHEMAS = ("pain.001.001.09", "pain.001.001.03")


class InvalidTransferFile(Exception):
    """The written file does not validate: a bug or a value no bank accepts; never stored."""


def credit_transfer_file(account, payments, schema, execution_date):
    """The file's bytes: one payment information block, debited from the fund's
    ``account``, with one credit transfer per payment (see ``domain.payment``)."""
    config = {"name": account.name, "IBAN": account.iban, "batch": True, "currency": "EUR"}
    if account.bic:
        config["BIC"] = account.bic
    transfer = SepaTransfer(config, schema=schema)
    for payment in payments:
        transfer.add_payment({**payment, "execution_date": execution_date})
    xml = transfer.export(validate=False)
    del transfer    # the element tree is about as large again as the parsed copy below
    validate(xml, schema)
    return xml


@lru_cache(maxsize=None)
def xml_schema(schema):
    if schema not in SUPPORTED_SCHEMAS:
        raise ValueError(f"unsupported file version {schema}")
    return etree.XMLSchema(etree.parse(str(files("sepaxml") / "schemas" / f"{schema}.xsd")))


def validate(xml, schema):
    """Raises InvalidTransferFile unless ``xml`` (bytes) is valid against the schema."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        document = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as error:
        raise InvalidTransferFile(f"not well-formed XML (line {error.lineno})") from None
    checker = xml_schema(schema)
    if not checker.validate(document):
        # Where and what kind, never the message: it quotes the value (a name, an IBAN).
        error = checker.error_log.last_error
        raise InvalidTransferFile(f"not valid {schema}: {error.type_name} at line {error.line}")
