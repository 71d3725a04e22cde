"""Event and RPC payloads of the declaration service."""
from datetime import date
from decimal import Decimal

from pydantic import EmailStr, Field, field_validator, model_validator

from common.schemas import InputPayload, MunicipalityCode, Payload, Postcode, RequiredText
from common.validators import chosen_from, validate_bsn

DECLARATION_PURPOSES = ("PARKING_PERMIT", "CARE_HOUSING", "CO_TENANCY", "HOUSING_URGENCY",
                        "JOB_SEEKING_EXEMPTION", "TRAVEL_COST_FUND", "OTHER")
DECLARATION_STATUSES = ("REQUESTED", "ISSUED", "REJECTED", "REVOKED", "EXPIRED")


# --- events -------------------------------------------------------------------------------

class DeclarationStatusChanged(Payload):
    """declaration.requested / .issued / .rejected / .revoked / .expired.

    No personal data: no BSN, no names, no care relationship, and not whose it is (that is
    the caregiver whose BSN it carries; a service that needs to know asks the declaration
    service)."""
    id: str
    reference: str
    status: str
    municipality_code: str
    purposes: list[str]
    valid_from: date | None = None
    valid_until: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _without_owner(cls, data):
        # Events published before declarations belonged to their BSN named an ``owner`` (a
        # token subject); one still queued at the upgrade is read without it.
        if isinstance(data, dict) and "owner" in data:
            data = {key: value for key, value in data.items() if key != "owner"}
        return data


# --- RPC payloads -------------------------------------------------------------------------

def _purposes(value):
    return chosen_from(value, DECLARATION_PURPOSES, "purpose")


class CaregiverInput(InputPayload):
    bsn: str
    name: RequiredText = Field(max_length=200)
    postcode: Postcode
    email: EmailStr | None = None

    _bsn = field_validator("bsn")(lambda v: validate_bsn(v))


class CareRecipientInput(InputPayload):
    name: RequiredText = Field(max_length=200)
    postcode: Postcode
    relationship: RequiredText = Field(max_length=100)


class DeclarationRequestInput(InputPayload):
    municipality_code: MunicipalityCode
    caregiver: CaregiverInput
    care_recipient: CareRecipientInput
    hours_per_week: Decimal = Field(max_digits=5, decimal_places=2)
    care_since: date
    purposes: list[str]

    _purposes = field_validator("purposes")(lambda v: _purposes(v))

    @field_validator("hours_per_week")
    @classmethod
    def _hours(cls, value):
        if not value.is_finite() or value < 0:
            raise ValueError("must be zero or more")
        if value > 168:
            raise ValueError("a week has 168 hours")
        return value

    @field_validator("care_since")
    @classmethod
    def _since(cls, value):
        if value > date.today():
            raise ValueError("must not be in the future")
        return value


class DeclarationSettingsInput(InputPayload):
    """A municipality's local choices; an omitted value keeps the national default."""
    min_care_months: int | None = Field(default=None, ge=0, le=120)
    min_hours_per_week: Decimal | None = Field(default=None, ge=0, le=168, max_digits=5,
                                               decimal_places=2)
    validity_months: int | None = Field(default=None, ge=1, le=120)
    purposes: list[str] | None = None

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value):
        return None if value is None else _purposes(value)
