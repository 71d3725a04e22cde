"""What every nameko service of the platform has: correlated logs, RED metrics on
``GET /metrics``, a heap the garbage collector need not walk, a ``health`` RPC, and, for
services with data, the outbox relay."""
import gc

import nameko.rpc
from nameko.amqp.publish import Publisher
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer
from nameko.web.handlers import http

from common.logging import CorrelatedLogging
from common.messaging import EventOutbox
from common.metrics import FROZEN_OBJECTS, EntrypointMetrics, metrics_response


class UnconfirmedPublisher(Publisher):
    use_confirms = False


# RPC replies go without publisher confirms: the caller waits for the reply and has its own
# timeout, so a confirm would only add a broker round trip to every call. nameko offers the
# responder's publisher class as the place to choose this.
nameko.rpc.Responder.publisher_cls = UnconfirmedPublisher


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
    log = CorrelatedLogging()
    metrics = EntrypointMetrics()
    startup_heap = StartupHeapFreeze()

    @http("GET", "/metrics")
    def prometheus_metrics(self, request):
        return metrics_response()


class PlatformService(InstrumentedService):
    """Subclasses set ``name`` and ``store = Storage(<the service's store class>)``."""

    outbox = EventOutbox()

    @rpc
    def health(self):
        return {
            "service": self.name,
            "status": "ok" if self.store.ping() else "degraded",
            "outbox_pending": self.outbox.pending(),
        }

    @timer(interval=1.0)
    def relay_outbox(self):
        # Picks up what a worker could not publish right after its transaction.
        self.outbox.relay()
        self.outbox.measure()
