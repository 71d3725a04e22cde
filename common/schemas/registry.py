"""Event and RPC payloads of the registry service: support points and reference data."""
from pydantic import EmailStr, Field, HttpUrl, field_validator

from common.schemas import InputPayload, MunicipalityCode, Payload, Postcode, RequiredText
from common.validators import chosen_from, normalise_phone

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


class SupportPointAddress(Payload):
    street: str
    house_number: str
    postcode: str
    city: str


class SupportPointChanged(Payload):
    """support_point.registered / .updated / .deactivated: the point as it now is. The contact
    details came later and are optional, so an event without them still reads."""
    id: str
    name: str
    kind: str
    municipality_code: str
    serves_municipality_codes: list[str]
    areas: list[str]
    active: bool
    version: int
    address: SupportPointAddress | None = None
    phone: str | None = None
    website: str | None = None


# --- RPC payloads -------------------------------------------------------------------------

def _blank_is_none(value):
    return None if isinstance(value, str) and not value.strip() else value


class AddressInput(InputPayload):
    street: RequiredText = Field(max_length=200)
    house_number: RequiredText = Field(max_length=20)
    postcode: Postcode
    city: RequiredText = Field(max_length=100)


class SupportPointInput(InputPayload):
    name: RequiredText = Field(max_length=200)
    kind: str
    municipality_code: MunicipalityCode
    serves_municipality_codes: list[MunicipalityCode] | None = None
    address: AddressInput
    phone: str | None = None
    email: EmailStr | None = None
    website: HttpUrl | None = None
    areas: list[str]

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

    @field_validator("areas")
    @classmethod
    def _areas(cls, value):
        return chosen_from(value, SUPPORT_AREAS, "support area")
