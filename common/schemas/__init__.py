"""Payload schemas of the events and RPC calls between services, one module per domain.

Both sides validate with them: the publisher before an event enters its outbox, the
consumer before its handler runs; a service before it acts on an RPC call."""
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Payload(BaseModel):
    """An event payload: snake_case, nothing unknown."""
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputPayload(BaseModel):
    """RPC input as the gateway receives it: GraphQL's camelCase names, so that an error
    names the field the way the client wrote it (``input.address.postcode``)."""
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)
