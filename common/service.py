"""What every nameko service of the platform has: correlated logs, RED metrics on
``GET /metrics``, a heap the garbage collector need not walk, a ``health`` RPC, and, for
services with data, the outbox relay."""
import gc
import uuid

import eventlet
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from nameko.web.handlers import http

from common.calls import DeadlineAtStart, rpc
from common.errors import BadUserInput, Unavailable
from common.logging import CorrelatedLogging
from common.metrics import FROZEN_OBJECTS, EntrypointMetrics, metrics_response
from common.outbox import EventOutbox
from common.storage import RequestsOnce
from common.transport import BROKER_UNREACHABLE


def ask(proxy, method, *args, timeout, service):
    """An RPC call of one service to another that answers UNAVAILABLE instead of waiting
    for ever, or when the broker cannot take it; the callee's refusals pass on as they are."""
    try:
        reply = getattr(proxy, method).call_async(*args)
    except BROKER_UNREACHABLE:
        raise Unavailable(f"the {service} service cannot be reached; try again later") from None
    with eventlet.Timeout(timeout, False):
        return reply.result()
    raise Unavailable(f"the {service} service did not answer; try again later")


class StartupHeapFreeze(DependencyProvider):
    """Once the service has started, everything that exists then (imported libraries, the
    GraphQL schema, configuration) is moved out of the collector's sight with ``gc.freeze``.
    Otherwise every full collection walks all of it and stops the whole process, every
    request in it included, for about 100 ms; after this it walks only what requests keep."""

    def start(self):
        gc.collect()
        gc.freeze()
        FROZEN_OBJECTS.labels(self.container.service_name).set(gc.get_freeze_count())


class InstrumentedService:
    """Logging, metrics and the frozen heap; the subclass chooses where ``/metrics`` is
    served (PlatformService on its web address, the gateway on an address of its own)."""
    log = CorrelatedLogging()
    metrics = EntrypointMetrics()
    startup_heap = StartupHeapFreeze()


class PlatformService(InstrumentedService):
    """Subclasses set ``name`` and ``store = Storage(<the service's store class>)``, and
    ``republishable`` when they publish events."""

    @http("GET", "/metrics")
    def prometheus_metrics(self, request):
        return metrics_response()

    deadline_at_start = DeadlineAtStart()
    outbox = EventOutbox()
    # Each mutation is done once per request identity: ``@once_per_request`` under its
    # ``@rpc`` (common.storage).
    once = RequestsOnce()
    # The events the service can send again from what it stores, for a new consumer:
    # {event type: (collection, payload of a stored document, field values to select)}.
    # A document's ``updated_at``, when it has one, is the time its event says it occurred.
    republishable = {}

    @rpc(open=True)
    def health(self):
        return {
            "service": self.name,
            "status": "ok" if self.store.ping() else "degraded",
            "outbox_pending": self.outbox.pending(),
        }

    @rpc
    def republish(self, event_type, queue, after=None, limit=500):
        """One batch of the current state as ``event_type`` events, sent only to ``queue``:
        a consumer's queue of that event (``mantelzorg republish`` walks every batch). The
        events are new (new ids); a consumer that had the state already changes nothing."""
        if event_type not in self.republishable:
            raise BadUserInput(f"event_type: {self.name} does not republish {event_type!r}",
                               field="event_type")
        if not str(queue).startswith(f"evt-{self.name}-{event_type}--"):
            raise BadUserInput(f"queue: not a queue of {event_type} events", field="queue")
        collection, payload, equal = self.republishable[event_type]
        if not self.outbox.queue_exists(queue):
            raise BadUserInput(f"queue: {queue} does not exist", field="queue")
        documents = self.store.page(collection, after, limit, **equal)
        # Each event keeps the time of the document's last change: a consumer that orders by
        # event time never lets this older news overwrite a change made meanwhile.
        sent = self.outbox.send_to_queue(
            event_type, [(payload(d), d.get("updated_at")) for d in documents], queue,
            f"republish-{uuid.uuid4()}")
        self.log.info("events.republished", event_type=event_type, queue=queue, sent=sent)
        return {"sent": sent, "next": documents[-1]["_id"] if len(documents) == limit else None}

    @timer(interval=1.0)
    def relay_outbox(self):
        # Picks up what a worker could not publish right after its transaction.
        try:
            self.outbox.relay()
        except BROKER_UNREACHABLE as error:   # one line a second, until it answers again
            self.log.warning("outbox.broker_unreachable", error=type(error).__name__)
