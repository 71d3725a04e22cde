"""Event and RPC payloads of the travel-cost fund."""
import string
import unicodedata
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from schwifty import IBAN
from text_unidecode import unidecode

from common.schemas import InputPayload, PastDate, Payload, Postcode, RequiredText
from common.validators import one_of

TRAVEL_MODES = ("CAR", "PUBLIC_TRANSPORT", "BICYCLE", "TAXI")
# Paid per km from the dated rate table; the others at the cost the caregiver states.
PER_KM_MODES = ("CAR", "BICYCLE")
CLAIM_STATUSES = ("SUBMITTED", "ON_HOLD", "APPROVED", "REJECTED", "PAID")
# What a payout batch shows its readers (four eyes: proposed, then released by another).
PAYOUT_BATCH_STATUSES = ("AWAITING_RELEASE", "RELEASED")
# The characters every bank in the SEPA zone accepts in a credit transfer (the EPC's basic
# Latin set); other letters are written as their nearest of these (Å as A, ß as ss).
SEPA_CHARACTERS = frozenset(string.ascii_letters + string.digits + "/-?:().,'+ ")
MAX_TRIPS_PER_CLAIM = 50


# --- events -------------------------------------------------------------------------------

class TravelClaimChanged(Payload):
    """travel_claim.submitted / .on_hold / .approved / .rejected / .paid: the claim after
    the change. No personal data: no IBAN, no account holder, no BSN, no postcodes."""
    id: str
    status: str
    declaration_reference: str
    amount_euros: str
    payout_batch_id: str | None = None


# --- RPC payloads -------------------------------------------------------------------------

def sepa_account(value):
    """An IBAN of the SEPA zone, checked with schwifty: (compact IBAN, BIC or None). The BIC
    is derived from the bank code where schwifty's registry knows it (every Dutch bank)."""
    try:
        iban = IBAN(value or "")
    except ValueError:
        raise ValueError("is not a valid IBAN") from None
    if not iban.in_sepa_zone:
        raise ValueError("is not an account in the SEPA zone")
    bic = iban.bic
    return iban.compact, str(bic) if bic else None


def sepa_text(value):
    """``value`` as a bank transfer carries it: transliterated into the SEPA character set.
    ValueError (naming the rule, never the value) for control or invisible characters and
    for anything that has no counterpart in that set."""
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise ValueError("holds a control or invisible character")
    written = unidecode(value).strip()
    if not written or not SEPA_CHARACTERS.issuperset(written):
        raise ValueError("can hold only letters, digits, spaces and / - ? : ( ) . , ' + "
                         "(the characters of a bank transfer)")
    return written


class TripInput(InputPayload):
    date: PastDate
    from_postcode: Postcode
    to_postcode: Postcode
    distance_km: Decimal = Field(gt=0, le=1000, decimal_places=2)   # one way
    return_trip: bool
    mode: Annotated[str, AfterValidator(one_of(TRAVEL_MODES))]
    # After ``mode``: its check reads the mode.
    cost_euros: Decimal | None = Field(default=None, gt=0, le=10000, decimal_places=2)

    @model_validator(mode="before")
    @classmethod
    def _cost_always_checked(cls, data):
        # A left-out cost is checked too, and an error then names it as the client does.
        if isinstance(data, dict) and "cost_euros" not in data:
            data = {"costEuros": None, **data}
        return data

    @field_validator("cost_euros")
    @classmethod
    def _cost_for_stated_modes(cls, value, info: ValidationInfo):
        mode = info.data.get("mode")
        if mode in PER_KM_MODES and value is not None:
            raise ValueError("is paid per km for this mode; leave the cost out")
        if mode is not None and mode not in PER_KM_MODES and value is None:
            raise ValueError("is required for public transport and taxi")
        return value


class TravelClaimInput(InputPayload):
    declaration_reference: str = Field(max_length=40)
    iban: str = Field(max_length=50)
    account_holder: RequiredText = Field(max_length=70)    # SEPA allows 70 characters
    trips: list[TripInput] = Field(min_length=1, max_length=MAX_TRIPS_PER_CLAIM)

    @field_validator("declaration_reference")
    @classmethod
    def _reference(cls, value):
        value = value.strip().upper()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("iban")
    @classmethod
    def _iban(cls, value):
        return sepa_account(value)[0]

    @field_validator("account_holder")
    @classmethod
    def _account_holder(cls, value):
        sepa_text(value)    # checked only: the name is kept as the caregiver wrote it
        return value
