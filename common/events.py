"""The event envelope, the catalogue of every event type, and who consumes which.

Every event on the broker is an Envelope whose payload matches the schema the catalogue
names for its type and version. docs/events.md describes the same catalogue for readers.

Publishers are strict, consumers lenient: an envelope is validated in full before it enters
the outbox, while a consumer ignores fields it does not know, so that a publisher may add a
field while older consumers still run. A change that older consumers cannot read is a new
version of the type; they read the versions the catalogue still knows.
"""
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field

from common.schemas import campaign, declaration, registry, travel_costs


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    correlation_id: str
    source: str
    payload: dict

    @classmethod
    def received(cls, body):
        """A consumer's reading of a body: envelope fields it does not know are left out."""
        return cls.model_validate(body, extra="ignore")

    def parsed_payload(self):
        """The payload as the schema of its type and version reads it. Fields the schema
        does not know (at any depth) are left out: a publisher may add optional fields before
        every consumer knows them."""
        return payload_schema(self.type, self.version).model_validate(self.payload,
                                                                      extra="ignore")


@dataclass(frozen=True)
class EventType:
    name: str
    source: str        # the only service that publishes it
    version: int
    schema: type[BaseModel]


CATALOGUE = {
    e.name: e
    for e in (
        EventType("municipality.imported", "registry", 1, registry.MunicipalityImported),
        EventType("support_point.registered", "registry", 1, registry.SupportPointChanged),
        EventType("support_point.updated", "registry", 1, registry.SupportPointChanged),
        EventType("support_point.deactivated", "registry", 1, registry.SupportPointChanged),
        EventType("pc4_areas.imported", "registry", 1, registry.Pc4AreasImported),
        EventType("declaration.requested", "declaration", 1, declaration.DeclarationStatusChanged),
        EventType("declaration.issued", "declaration", 1, declaration.DeclarationStatusChanged),
        EventType("declaration.rejected", "declaration", 1, declaration.DeclarationStatusChanged),
        EventType("declaration.revoked", "declaration", 1, declaration.DeclarationStatusChanged),
        EventType("declaration.expired", "declaration", 1, declaration.DeclarationStatusChanged),
        EventType("bag_order.requested", "campaign", 1, campaign.BagOrderChanged),
        EventType("bag_order.allocated", "campaign", 1, campaign.BagOrderChanged),
        EventType("bag_order.partly_allocated", "campaign", 1, campaign.BagOrderChanged),
        EventType("bag_order.shipped", "campaign", 1, campaign.BagOrderChanged),
        EventType("bag_order.delivered", "campaign", 1, campaign.BagOrderChanged),
        EventType("bag_order.cancelled", "campaign", 1, campaign.BagOrderChanged),
        EventType("campaign.created", "campaign", 1, campaign.CampaignChanged),
        EventType("campaign.launched", "campaign", 1, campaign.CampaignChanged),
        EventType("campaign.opted_out", "campaign", 1, campaign.CampaignChanged),
        EventType("travel_claim.submitted", "travel_costs", 1, travel_costs.TravelClaimChanged),
        EventType("travel_claim.on_hold", "travel_costs", 1, travel_costs.TravelClaimChanged),
        EventType("travel_claim.approved", "travel_costs", 1, travel_costs.TravelClaimChanged),
        EventType("travel_claim.rejected", "travel_costs", 1, travel_costs.TravelClaimChanged),
        EventType("travel_claim.paid", "travel_costs", 1, travel_costs.TravelClaimChanged),
    )
}


# Earlier versions of a type that consumers still read while a publisher may send them:
# (type, version) -> payload schema. Empty while no type has had a breaking change.
EARLIER_VERSIONS = {}


def event_type(name):
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ValueError(f"unknown event type {name!r}") from None


def payload_schema(name, version):
    kind = event_type(name)
    if version == kind.version:
        return kind.schema
    try:
        return EARLIER_VERSIONS[(name, version)]
    except KeyError:
        raise ValueError(f"unknown version {version} of event type {name!r}") from None


@dataclass(frozen=True)
class Subscription:
    event: str
    consumer: str      # service name
    handler: str       # method name on the consumer service

    @property
    def source(self):
        return event_type(self.event).source

    @property
    def queue(self):
        # The name nameko gives a service-pool event handler's queue.
        return f"evt-{self.source}-{self.event}--{self.consumer}.{self.handler}"


SUBSCRIPTIONS = (
    Subscription("municipality.imported", "declaration", "on_municipality_imported"),
    Subscription("municipality.imported", "campaign", "on_municipality_imported"),
    Subscription("support_point.registered", "campaign", "on_support_point_changed"),
    Subscription("support_point.updated", "campaign", "on_support_point_changed"),
    Subscription("support_point.deactivated", "campaign", "on_support_point_changed"),
    Subscription("declaration.issued", "travel_costs", "on_declaration_changed"),
    Subscription("declaration.revoked", "travel_costs", "on_declaration_changed"),
    Subscription("declaration.expired", "travel_costs", "on_declaration_changed"),
    Subscription("pc4_areas.imported", "travel_costs", "on_pc4_areas_imported"),
    # The caregiver's messages: every decision, and the validity that the expiry notice
    # 30 days ahead is counted from.
    *(Subscription(event, "notifications", "on_declaration_changed")
      for event in ("declaration.issued", "declaration.rejected", "declaration.revoked",
                    "declaration.expired")),
    *(Subscription(event, "notifications", "on_travel_claim_changed")
      for event in ("travel_claim.on_hold", "travel_claim.approved", "travel_claim.rejected",
                    "travel_claim.paid")),
)


def subscriptions_from(source):
    """The subscriptions to the events ``source`` publishes."""
    return [entry for entry in SUBSCRIPTIONS if entry.source == source]


def is_consumed(type_name):
    return any(entry.event == type_name for entry in SUBSCRIPTIONS)


def subscription(event, consumer, handler):
    for entry in SUBSCRIPTIONS:
        if (entry.event, entry.consumer, entry.handler) == (event, consumer, handler):
            return entry
    raise LookupError(f"{consumer}.{handler} is not subscribed to {event} in common.events")


def new_envelope(type_name, payload, correlation_id, source, occurred_at=None):
    """Validate a payload against the catalogue and wrap it for publication. ``occurred_at``
    defaults to now; a state published again keeps the time of its last change."""
    kind = event_type(type_name)
    if kind.source != source:
        raise ValueError(f"{source} may not publish {type_name}")
    body = kind.schema.model_validate(payload).model_dump(mode="json")
    when = {"occurred_at": occurred_at} if occurred_at is not None else {}
    return Envelope(type=type_name, version=kind.version, correlation_id=correlation_id,
                    source=source, payload=body, **when)
