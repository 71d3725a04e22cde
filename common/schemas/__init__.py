"""Payload schemas of the events and RPC calls between services, one module per domain.

Both sides validate with them: the publisher before an event enters its outbox, the
consumer before its handler runs; a service before it acts on an RPC call."""
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from common.errors import bad_input_from_validation
from common.validators import normalise_postcode, required_text, validate_municipality_code

# Field types the input payloads of every domain share.
MunicipalityCode = Annotated[str, AfterValidator(validate_municipality_code)]
Postcode = Annotated[str, AfterValidator(normalise_postcode)]
RequiredText = Annotated[str, AfterValidator(required_text)]


class Payload(BaseModel):
    """An event payload: snake_case, nothing unknown."""
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputPayload(BaseModel):
    """RPC input as the gateway receives it: GraphQL's camelCase names, so that an error
    names the field the way the client wrote it (``input.address.postcode``)."""
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)

    @classmethod
    def parsed(cls, data, field="input"):
        """``data`` checked against this schema; otherwise BAD_USER_INPUT naming the first
        offending field under ``field`` (``input.caregiver.bsn``)."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise bad_input_from_validation(exc, field) from None
