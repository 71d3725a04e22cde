"""Platform fields the gateway adds to the contract: health of every service."""
import graphene

from common.config import SERVICE_NAMES


class ServiceHealth(graphene.ObjectType):
    name = graphene.String(required=True)
    status = graphene.String(required=True, description="ok, degraded or unavailable")
    outbox_pending = graphene.Int(description="events written but not yet published")


class PlatformHealth(graphene.ObjectType):
    status = graphene.String(required=True, description="ok when every service is ok")
    services = graphene.List(graphene.NonNull(ServiceHealth), required=True)


class PlatformQuery(graphene.ObjectType):
    health = graphene.Field(PlatformHealth, required=True,
                            description="Added by the gateway: the status of every service.")

    def resolve_health(root, info):
        services = []
        for name in SERVICE_NAMES:
            try:
                answer = info.context.call(name, "health", timeout=2)
                services.append(ServiceHealth(name=name, status=answer["status"],
                                              outbox_pending=answer.get("outbox_pending")))
            except Exception:
                services.append(ServiceHealth(name=name, status="unavailable"))
        overall = "ok" if all(s.status == "ok" for s in services) else "degraded"
        return PlatformHealth(status=overall, services=services)
