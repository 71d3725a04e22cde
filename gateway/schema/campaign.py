"""Information bags and the #deeljezorg campaign: the contract's types and fields, answered by
the campaign service over RPC. The gateway checks the caller's role; the service checks whose
municipality an order is of.

Added to the contract (documented in docs/campaign.md): ``BagOrder.history`` and
``Campaign.materials``."""
from datetime import date, datetime

import graphene

from common.schemas.campaign import BAG_ORDER_STATUSES, CAMPAIGN_SCOPES
from gateway.limits import calls_services
from gateway.schema.scalars import Date, DateTime
from gateway.schema.shared import audit_step, enum_of, to_wire

SERVICE = "campaign"
ORDERING = ("municipality", "support_point", "campaign", "admin")
TEAM = ("campaign", "admin")

BagOrderStatus = enum_of("BagOrderStatus", BAG_ORDER_STATUSES,
                         "Where an order of information bags is.")
CampaignScope = enum_of("CampaignScope", CAMPAIGN_SCOPES,
                        "Whom a campaign reaches: the whole country or a list of municipalities.")


def _moment(text):
    return datetime.fromisoformat(text) if isinstance(text, str) else text


def _day(text):
    return date.fromisoformat(text) if isinstance(text, str) else text


BagOrderChange = audit_step(
    "BagOrderChange", BagOrderStatus, "Added: one change of an order, oldest first.",
    "request, allocate, allocate_part, ship, deliver or cancel",
    quantity=graphene.Int(description="the bags the change was about"))


class BagOrder(graphene.ObjectType):
    id = graphene.ID(required=True)
    municipality_code = graphene.String(required=True)
    support_point_id = graphene.ID()
    quantity_requested = graphene.Int(required=True)
    quantity_allocated = graphene.Int(required=True)
    status = graphene.Field(BagOrderStatus, required=True)
    local_inserts = graphene.List(graphene.NonNull(graphene.String), required=True)
    created_at = DateTime(required=True)
    history = graphene.List(graphene.NonNull(BagOrderChange), required=True,
                            description="Added: the audit trail, oldest first.")

    def resolve_created_at(root, info):
        return _moment(root["created_at"])


class BagStock(graphene.ObjectType):
    printed = graphene.Int(required=True)
    allocated = graphene.Int(required=True)
    shipped = graphene.Int(required=True)
    available = graphene.Int(required=True)


class Campaign(graphene.ObjectType):
    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    hashtag = graphene.String(required=True)
    scope = graphene.Field(CampaignScope, required=True)
    municipality_codes = graphene.List(graphene.NonNull(graphene.String), required=True)
    starts_on = Date(required=True)
    ends_on = Date(required=True)
    launched = graphene.Boolean(required=True)
    reached_support_points = graphene.Int(required=True)
    opted_out_municipality_codes = graphene.List(graphene.NonNull(graphene.String),
                                                 required=True)
    materials = graphene.List(graphene.NonNull(graphene.String), required=True,
                              description="Added: the material distributed to support points.")

    def resolve_starts_on(root, info):
        return _day(root["starts_on"])

    def resolve_ends_on(root, info):
        return _day(root["ends_on"])


class CampaignInput(graphene.InputObjectType):
    name = graphene.String(required=True)
    hashtag = graphene.String(required=True)
    scope = CampaignScope(required=True)
    municipality_codes = graphene.List(graphene.NonNull(graphene.String))
    starts_on = Date(required=True)
    ends_on = Date(required=True)
    materials = graphene.List(graphene.NonNull(graphene.String), required=True)


class BagAllocation(graphene.ObjectType):
    order = graphene.Field(BagOrder, required=True)
    allocated_now = graphene.Int(required=True)
    explanation = graphene.String(required=True)


class BagAllocationRound(graphene.ObjectType):
    id = graphene.ID(required=True)
    available_before = graphene.Int(required=True)
    allocated = graphene.Int(required=True)
    allocations = graphene.List(graphene.NonNull(BagAllocation), required=True)
    created_at = DateTime(required=True)

    def resolve_created_at(root, info):
        return _moment(root["created_at"])


def _call(info, roles, method, *args):
    """A call for a caller with one of ``roles``; the service is told who asks."""
    context = info.context
    context.principal.require(*roles)
    return context.call(SERVICE, method, *args, context.actor)


class CampaignQuery(graphene.ObjectType):
    bag_stock = graphene.Field(BagStock, required=True)
    bag_orders = graphene.List(graphene.NonNull(BagOrder), required=True,
                               municipality_code=graphene.String())
    campaigns = graphene.List(graphene.NonNull(Campaign), required=True)

    @calls_services()
    def resolve_bag_stock(root, info):
        return _call(info, TEAM, "bag_stock")

    @calls_services()
    def resolve_bag_orders(root, info, municipality_code=None):
        return _call(info, ORDERING, "bag_orders", municipality_code)

    @calls_services()
    def resolve_campaigns(root, info):
        # a municipality: the campaigns that include it (the service chooses them)
        return _call(info, (*TEAM, "municipality"), "campaigns")


class CampaignMutation(graphene.ObjectType):
    add_print_run = graphene.Field(BagStock, required=True, quantity=graphene.Int(required=True))
    order_information_bags = graphene.Field(
        BagOrder, required=True, municipality_code=graphene.String(required=True),
        support_point_id=graphene.ID(), quantity=graphene.Int(required=True),
        local_inserts=graphene.List(graphene.NonNull(graphene.String)))
    mark_bag_order_shipped = graphene.Field(BagOrder, required=True, id=graphene.ID(required=True))
    mark_bag_order_delivered = graphene.Field(BagOrder, required=True,
                                              id=graphene.ID(required=True))
    cancel_bag_order = graphene.Field(BagOrder, required=True, id=graphene.ID(required=True),
                                      reason=graphene.String(required=True))
    run_bag_allocation = graphene.Field(BagAllocationRound, required=True)
    create_campaign = graphene.Field(Campaign, required=True, input=CampaignInput(required=True))
    launch_campaign = graphene.Field(Campaign, required=True, id=graphene.ID(required=True))
    opt_out_of_campaign = graphene.Field(Campaign, required=True, id=graphene.ID(required=True),
                                         municipality_code=graphene.String(required=True))

    @calls_services()
    def resolve_add_print_run(root, info, quantity):
        return _call(info, TEAM, "add_print_run", quantity)

    @calls_services()
    def resolve_order_information_bags(root, info, **arguments):
        return _call(info, ORDERING, "order_bags", to_wire(arguments))

    @calls_services()
    def resolve_mark_bag_order_shipped(root, info, id):
        return _call(info, TEAM, "mark_bag_order_shipped", id)

    @calls_services()
    def resolve_mark_bag_order_delivered(root, info, id):
        return _call(info, TEAM, "mark_bag_order_delivered", id)

    @calls_services()
    def resolve_cancel_bag_order(root, info, id, reason):
        return _call(info, ORDERING, "cancel_bag_order", id, reason)

    @calls_services()
    def resolve_run_bag_allocation(root, info):
        return _call(info, TEAM, "run_bag_allocation")

    @calls_services()
    def resolve_create_campaign(root, info, input):
        return _call(info, TEAM, "create_campaign", to_wire(input))

    @calls_services()
    def resolve_launch_campaign(root, info, id):
        return _call(info, TEAM, "launch_campaign", id)

    @calls_services()
    def resolve_opt_out_of_campaign(root, info, id, municipality_code):
        return _call(info, ("municipality", "admin"), "opt_out_of_campaign", id,
                     municipality_code)
