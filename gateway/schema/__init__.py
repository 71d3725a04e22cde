"""The gateway's GraphQL schema: the contract's types and fields, one module per domain,
combined here. ``schema.graphql`` beside this file is the printed result, committed and
checked by the tests against the contract."""
import graphene

from gateway.schema.campaign import CampaignMutation, CampaignQuery
from gateway.schema.declarations import DeclarationMutation, DeclarationQuery
from gateway.schema.notifications import NotificationsQuery
from gateway.schema.platform import PlatformQuery
from gateway.schema.registry import RegistryMutation, RegistryQuery
from gateway.schema.travel_costs import TravelCostsMutation, TravelCostsQuery

QUERIES = (PlatformQuery, RegistryQuery, DeclarationQuery, TravelCostsQuery, CampaignQuery,
           NotificationsQuery)
MUTATIONS = (RegistryMutation, DeclarationMutation, TravelCostsMutation, CampaignMutation)


class Query(*QUERIES, graphene.ObjectType):
    pass


Mutation = type("Mutation", (*MUTATIONS, graphene.ObjectType), {}) if MUTATIONS else None

schema = graphene.Schema(query=Query, mutation=Mutation, auto_camelcase=True)
