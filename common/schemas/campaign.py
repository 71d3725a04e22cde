"""Event and RPC payloads of the campaign service: information bags and the #deeljezorg
campaign."""
import re
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from common.schemas import InputPayload, MunicipalityCode, Payload, RequiredText

BAG_ORDER_STATUSES = ("REQUESTED", "ALLOCATED", "SHIPPED", "DELIVERED", "CANCELLED")
CAMPAIGN_SCOPES = ("NATIONAL", "REGIONAL")
# The approach prints 100,000 bags in all; no single order or print run is larger.
MAX_BAGS = 100_000
MAX_INSERT_LINES = 20
HASHTAG = re.compile(r"#?[A-Za-z0-9_]{2,60}")

InsertLine = Annotated[RequiredText, Field(max_length=300)]
MaterialName = Annotated[RequiredText, Field(max_length=200)]


# --- events -------------------------------------------------------------------------------

class BagOrderChanged(Payload):
    """bag_order.requested / .allocated / .partly_allocated / .shipped / .delivered /
    .cancelled: the order after the change. No reason text: it may name people."""
    id: str
    municipality_code: str
    support_point_id: str | None = None
    quantity_requested: int
    quantity_allocated: int
    status: str


class CampaignChanged(Payload):
    """campaign.created / .launched / .opted_out: the campaign after the change."""
    id: str
    name: str
    hashtag: str
    scope: Literal[CAMPAIGN_SCOPES]
    municipality_codes: list[str]
    opted_out_municipality_codes: list[str]
    starts_on: date
    ends_on: date
    launched: bool
    reached_support_points: int


# --- RPC payloads -------------------------------------------------------------------------

def _bag_count(value):
    if value < 1:
        raise ValueError("must be at least 1")
    if value > MAX_BAGS:
        raise ValueError(f"must be at most {MAX_BAGS:,}")
    return value


class PrintRunInput(InputPayload):
    quantity: int

    _quantity = field_validator("quantity")(lambda v: _bag_count(v))


class BagOrderInput(InputPayload):
    """``orderInformationBags``: its arguments, named as the contract names them."""
    municipality_code: MunicipalityCode
    support_point_id: str | None = None
    quantity: int
    local_inserts: list[InsertLine] | None = Field(default=None, max_length=MAX_INSERT_LINES)

    _quantity = field_validator("quantity")(lambda v: _bag_count(v))


class CampaignInput(InputPayload):
    name: RequiredText = Field(max_length=200)
    hashtag: str
    scope: Literal[CAMPAIGN_SCOPES]
    municipality_codes: list[MunicipalityCode] | None = Field(default=None, validate_default=True)
    starts_on: date
    ends_on: date
    materials: list[MaterialName] = Field(max_length=50)

    @field_validator("hashtag")
    @classmethod
    def _hashtag(cls, value):
        text = value.strip()
        if not HASHTAG.fullmatch(text):
            raise ValueError("must be a hashtag of letters, digits and _ (#deeljezorg)")
        return "#" + text.lstrip("#")

    @field_validator("municipality_codes")
    @classmethod
    def _region(cls, value, info: ValidationInfo):
        codes = list(dict.fromkeys(value or []))
        scope = info.data.get("scope")
        if scope == "REGIONAL" and not codes:
            raise ValueError("a regional campaign names at least one municipality")
        if scope == "NATIONAL" and codes:
            raise ValueError("a national campaign reaches every municipality; leave this out")
        return codes

    @field_validator("ends_on")
    @classmethod
    def _period(cls, value, info: ValidationInfo):
        starts_on = info.data.get("starts_on")
        if starts_on is not None and value < starts_on:
            raise ValueError("must not lie before startsOn")
        return value

    @field_validator("materials")
    @classmethod
    def _materials(cls, value):
        if not value:
            raise ValueError("name at least one material")
        return list(dict.fromkeys(value))
