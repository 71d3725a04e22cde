"""The caregiver's messages, answered by the notifications service over RPC: the same text as
the e-mail that went with each (when the caregiver gave an address)."""
from datetime import datetime

import graphene

from gateway.limits import calls_services
from gateway.schema.scalars import DateTime

SERVICE = "notifications"


class Message(graphene.ObjectType):
    """A message to a caregiver: the same text as the e-mail, kept in the caregiver's
    message box."""
    id = graphene.ID(required=True)
    sent_at = DateTime(required=True)
    subject = graphene.String(required=True)
    body = graphene.String(required=True)
    about = graphene.String()


class NotificationsQuery(graphene.ObjectType):
    my_messages = graphene.List(graphene.NonNull(Message), required=True)

    @calls_services()
    def resolve_my_messages(root, info):
        context = info.context
        context.principal.require("caregiver")
        return [Message(**{**answer, "sent_at": datetime.fromisoformat(answer["sent_at"])})
                for answer in context.call(SERVICE, "my_messages", context.actor)]
