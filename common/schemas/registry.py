"""Event and RPC payloads of the registry service: support points and reference data."""
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, HttpUrl, field_validator

from common.schemas import InputPayload, Payload
from common.validators import normalise_phone, normalise_postcode, validate_municipality_code

SUPPORT_AREAS = ("INFORMATION", "ADVICE_AND_GUIDANCE", "EMOTIONAL_SUPPORT", "EDUCATION",
                 "PRACTICAL_HELP", "RESPITE_CARE", "FINANCIAL_SUPPORT", "MATERIAL_SUPPORT")
SUPPORT_POINT_KINDS = ("LOCAL", "REGIONAL", "NATIONAL")


# --- events -------------------------------------------------------------------------------

class MunicipalityImported(Payload):
    """A municipality from the CBS reference list, as imported into the registry."""
    code: str
    name: str
    province: str
    population: int | None = None


class SupportPointChanged(Payload):
    """support_point.registered / .updated / .deactivated: the point as it now is."""
    id: str
    name: str
    kind: str
    municipality_code: str
    serves_municipality_codes: list[str]
    areas: list[str]
    active: bool
    version: int


# --- RPC payloads -------------------------------------------------------------------------

MunicipalityCode = Annotated[str, AfterValidator(validate_municipality_code)]


def _required_text(value):
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _blank_is_none(value):
    return None if isinstance(value, str) and not value.strip() else value


class AddressInput(InputPayload):
    street: str = Field(max_length=200)
    house_number: str = Field(max_length=20)
    postcode: str
    city: str = Field(max_length=100)

    _text = field_validator("street", "house_number", "city")(_required_text)
    _postcode = field_validator("postcode")(lambda v: normalise_postcode(v))


class SupportPointInput(InputPayload):
    name: str = Field(max_length=200)
    kind: str
    municipality_code: str
    serves_municipality_codes: list[MunicipalityCode] | None = None
    address: AddressInput
    phone: str | None = None
    email: EmailStr | None = None
    website: HttpUrl | None = None
    areas: list[str]

    _name = field_validator("name")(_required_text)
    _optional = field_validator("phone", "email", "website", mode="before")(_blank_is_none)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value):
        return None if value is None else normalise_phone(value)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value):
        if value not in SUPPORT_POINT_KINDS:
            raise ValueError(f"must be one of {', '.join(SUPPORT_POINT_KINDS)}")
        return value

    @field_validator("municipality_code")
    @classmethod
    def _municipality(cls, value):
        return validate_municipality_code(value)

    @field_validator("areas")
    @classmethod
    def _areas(cls, value):
        unknown = [a for a in value if a not in SUPPORT_AREAS]
        if unknown:
            raise ValueError("unknown support area")
        if not value:
            raise ValueError("name at least one support area")
        return list(dict.fromkeys(value))
