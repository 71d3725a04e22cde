"""Validation of Dutch identifiers and other input, shared by the services and the gateway."""
import re

from stdnum.nl import bsn as stdnum_bsn
from stdnum.nl import postcode as stdnum_postcode

from common import clock

MUNICIPALITY_CODE = re.compile(r"GM\d{4}")
PHONE_SHAPE = re.compile(r"\+?[0-9][0-9 ()-]*[0-9]")


def normalise_postcode(value):
    """'1012ab' -> '1012 AB'; ValueError when it is no Dutch postcode."""
    try:
        return stdnum_postcode.validate(value or "")
    except Exception:
        raise ValueError("is not a Dutch postcode (1234 AB)") from None


def pc4_of(value):
    """The four digits of a full postcode or of a bare PC4 ('1012')."""
    text = (value or "").strip()
    if re.fullmatch(r"[1-9]\d{3}", text):
        return text
    return normalise_postcode(text)[:4]


def validate_bsn(value):
    try:
        return stdnum_bsn.validate(value or "")
    except Exception:
        raise ValueError("is not a valid BSN") from None


def validate_municipality_code(value):
    text = (value or "").strip().upper()
    if not MUNICIPALITY_CODE.fullmatch(text):
        raise ValueError("is not a CBS municipality code (GM0363)")
    return text


def normalise_phone(value):
    """A Dutch or international phone number as written ('020-123 45 67', '+31 20 1234567',
    '0800-1234'), with its spacing tidied; ValueError when it has no phone number's shape."""
    text = " ".join((value or "").split())
    digits = re.sub(r"\D", "", text)
    if not PHONE_SHAPE.fullmatch(text) or not 7 <= len(digits) <= 15:
        raise ValueError("is not a phone number (020-123 45 67 or +31 20 123 4567)")
    return text


def required_text(value):
    """Text with something in it, without surrounding spaces."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def chosen_from(values, allowed, what):
    """At least one value, each from ``allowed``; repeats dropped, order kept."""
    if not values:
        raise ValueError(f"name at least one {what}")
    if any(value not in allowed for value in values):
        raise ValueError(f"unknown {what}")
    return list(dict.fromkeys(values))


def one_of(allowed):
    """A check that a value is one of ``allowed`` (for ``AfterValidator``)."""
    def check(value):
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return check


def not_in_future(day):
    if day > clock.today():
        raise ValueError("must not be in the future")
    return day
