"""Plain Dutch for what the services answer in English: why the fund holds a claim or pays
less of it, for the caregiver's pages and the fund's desk alike. A part not recognised (a
reviewer's own reason, written in Dutch already) is shown as it is."""
import re

from gateway.web.texts import euros, number

_PARTS = (
    (re.compile(r"(?:implausible distance: )?trip (\d+): ([\d.]+) km stated, ([\d.]+) km in a "
                r"straight line between the postcode areas \(more than ([\d.]+) x that \+ "
                r"([\d.]+) km\)"),
     lambda m, caregiver: (f"Rit {m[1]}: de afstand lijkt niet te kloppen. Opgegeven is {number(m[2])} km "
                f"enkele reis; hemelsbreed tussen de postcodegebieden is het {number(m[3])} km "
                f"(meer dan {number(m[4])} keer dat plus {number(m[5])} km).")),
    (re.compile(r"the declaration was revoked"),
     lambda m, caregiver: "De mantelzorgverklaring is ingetrokken door de gemeente."),
    (re.compile(r"the declaration expired"),
     lambda m, caregiver: "De mantelzorgverklaring is verlopen."),
    (re.compile(r"not paid: the account holder's name has characters a bank transfer "
                r"cannot carry"),
     lambda m, caregiver: ("Niet betaald: de naam van de rekeninghouder heeft tekens die een "
                "bankoverschrijving niet kan meenemen.")),
    (re.compile(r"not paid: its bank account cannot be read"),
     lambda m, caregiver: "Niet betaald: het rekeningnummer kon niet worden gelezen."),
    (re.compile(r"not paid: the transfer does not meet the rules of a SEPA file"),
     lambda m, caregiver: "Niet betaald: de overschrijving voldoet niet aan de regels van een SEPA-bestand."),
    (re.compile(r"the fund's staff contact the caregiver"),
     lambda m, caregiver: ("Het reiskostenfonds neemt contact met u op." if caregiver
                                 else "Neem contact op met de mantelzorger.")),
    (re.compile(r"trip (\d+): ([\d.]+) km one way or less is not paid"),
     lambda m, caregiver: f"Rit {m[1]}: {number(m[2])} km enkele reis of minder wordt niet vergoed."),
    (re.compile(r"trip (\d+): ([\d.]+) paid, the most per trip"),
     lambda m, caregiver: f"Rit {m[1]}: {euros(m[2])} vergoed, het hoogste bedrag per rit."),
    (re.compile(r"([\d.]+) over the annual cap of ([\d.]+) for (\d{4}) is not paid"),
     lambda m, caregiver: (f"{euros(m[1])} boven het maximum van {euros(m[2])} per jaar ({m[3]}) "
                           f"wordt niet vergoed.")),
)


def claim_reasons(reason, caregiver=False):
    """A claim's reason as Dutch sentences, one per part; ``caregiver``: addressed to the
    caregiver rather than to the fund's staff."""
    sentences = []
    for part in (reason or "").split("; "):
        part = part.strip()
        if not part:
            continue
        for pattern, words in _PARTS:
            match = pattern.fullmatch(part)
            if match:
                sentences.append(words(match, caregiver))
                break
        else:
            sentences.append(part)
    return sentences
