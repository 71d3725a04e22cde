"""Forms: what a caregiver typed, read back as the contract's input, and every mistake named
next to its field in plain Dutch. The services check everything again; the pages check
first only to say more precisely what is wrong."""
import re
from datetime import date
from decimal import Decimal, InvalidOperation

from common.validators import normalise_postcode

REQUIRED = "Vul {what} in."


class Form:
    """The values of one form (kept exactly as typed, to show them again) and its errors,
    in the order of the fields."""

    def __init__(self, values):
        self.values = {key: (value or "").strip() for key, value in values.items()}
        self.errors = {}

    def get(self, name):
        return self.values.get(name, "")

    def fail(self, name, message):
        self.errors.setdefault(name, message)

    def required(self, name, what):
        value = self.get(name)
        if not value:
            self.fail(name, REQUIRED.format(what=what))
        return value

    def postcode(self, name, what):
        value = self.required(name, what)
        if value:
            try:
                return normalise_postcode(value)
            except ValueError:
                self.fail(name, f"Vul {what} in zoals 1234 AB.")
        return value

    def day(self, name, what, not_after=None):
        value = self.required(name, what)
        if not value:
            return value
        parsed = parse_day(value)
        if parsed is None:
            self.fail(name, f"Vul {what} in als dag-maand-jaar, bijvoorbeeld 15-03-2026.")
            return value
        if not_after and parsed > not_after:
            self.fail(name, f"{what[0].upper()}{what[1:]} mag niet in de toekomst liggen.")
        return parsed.isoformat()

    def decimal(self, name, what, example, required=True):
        value = self.required(name, what) if required else self.get(name)
        if not value:
            return None
        parsed = parse_decimal(value)
        if parsed is None or parsed < 0:
            self.fail(name, f"Vul {what} in als een getal, bijvoorbeeld {example}.")
            return value
        return str(parsed)

    def refused(self, refusal, fields, general):
        """Errors the service answered: each input path named by one is shown at its form
        field (``fields`` maps form field -> (input path, message)); others at the top."""
        placed = False
        for path in refusal.fields:
            for name, (input_path, message) in fields.items():
                if path == input_path or path.startswith(input_path + "."):
                    self.fail(name, message)
                    placed = True
                    break
        if not placed:
            self.fail("", general)


def parse_day(text):
    """'15-03-2026', '15/3/2026', '15.03.2026' or '2026-03-15' -> date; None otherwise."""
    text = text.strip()
    match = re.fullmatch(r"(\d{1,2})[-/. ](\d{1,2})[-/. ](\d{4})", text)
    try:
        if match:
            return date(int(match[3]), int(match[2]), int(match[1]))
        match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
        if match:
            return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None
    return None


def parse_decimal(text):
    """'12,5', '12.5' or '1.234,50' -> Decimal; None when it is no number."""
    text = text.strip().replace(" ", "").replace("€", "")
    if "," in text:
        text = text.replace(".", "").replace(",", ".")
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None
