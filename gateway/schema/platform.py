"""Platform fields the gateway adds to the contract: health of every service."""
import time

import graphene

from common.config import SERVICE_NAMES
from gateway.context import DeadlineExceeded
from gateway.limits import calls_services

HEALTH_TIMEOUT_SECONDS = 2


class ServiceHealth(graphene.ObjectType):
    name = graphene.String(required=True)
    status = graphene.String(required=True, description="ok, degraded or unavailable")
    outbox_pending = graphene.Int(description="events written but not yet published "
                                              "(admin only; null for anyone else)")


class PlatformHealth(graphene.ObjectType):
    status = graphene.String(required=True, description="ok when every service is ok")
    services = graphene.List(graphene.NonNull(ServiceHealth), required=True)


class PlatformQuery(graphene.ObjectType):
    health = graphene.Field(PlatformHealth, required=True,
                            description="Added by the gateway: the status of every service; "
                                        "the unpublished events of each only for admin.")

    @calls_services(len(SERVICE_NAMES))
    def resolve_health(root, info):
        context = info.context
        detail = context.principal is not None and context.principal.role == "admin"
        until = time.monotonic() + HEALTH_TIMEOUT_SECONDS   # all are asked at once
        pending = {}
        for name in SERVICE_NAMES:
            try:
                pending[name] = context.send(name, "health")
            except DeadlineExceeded:
                raise
            except Exception:
                pending[name] = None
        services = []
        for name, call in pending.items():
            try:
                answer = call.result(until=until)
                services.append(ServiceHealth(
                    name=name, status=answer["status"],
                    outbox_pending=answer.get("outbox_pending") if detail else None))
            except DeadlineExceeded:
                raise
            except Exception:
                services.append(ServiceHealth(name=name, status="unavailable"))
        overall = "ok" if all(s.status == "ok" for s in services) else "degraded"
        return PlatformHealth(status=overall, services=services)
