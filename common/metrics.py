"""RED metrics per entrypoint for every service, exposed in the Prometheus text format.

prometheus-client keeps one registry per process; every service runs in its own process.
"""
import logging
import time
from weakref import WeakKeyDictionary

import eventlet
from eventlet import wsgi
from nameko.extensions import DependencyProvider
from nameko.web.server import parse_address
from prometheus_client import (CONTENT_TYPE_LATEST, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

disable_created_metrics()   # the *_created series only double what Prometheus scrapes

REQUESTS = Counter(
    "mantelzorg_entrypoint_requests_total",
    "Entrypoint invocations (RPC, HTTP, event, timer), by outcome.",
    ["service", "entrypoint", "kind", "outcome"],
)
ERRORS = Counter(
    "mantelzorg_entrypoint_errors_total",
    "Entrypoint invocations that failed, by error type.",
    ["service", "entrypoint", "kind", "error"],
)
DURATION = Histogram(
    "mantelzorg_entrypoint_duration_seconds",
    "Time spent in an entrypoint.",
    ["service", "entrypoint", "kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "mantelzorg_events_published_total", "Events published from the outbox.", ["service", "type"])
EVENTS_UNROUTABLE = Counter(
    "mantelzorg_events_unroutable_total",
    "Events the broker returned because no queue took them; they stay in the outbox.",
    ["service", "type"])
EVENTS_HANDLED = Counter(
    "mantelzorg_events_handled_total",
    "Events consumed, by outcome (handled, duplicate, retried, dead_lettered).",
    ["service", "type", "outcome"],
)
RPC_REDELIVERIES_REFUSED = Counter(
    "mantelzorg_rpc_redeliveries_refused_total",
    "Calls handed out again after their process died or lost the broker; answered "
    "UNAVAILABLE, not run twice.", ["service", "method"])
RPC_CALLS_EXPIRED = Counter(
    "mantelzorg_rpc_calls_expired_total",
    "Calls whose caller had stopped waiting (their deadline passed) before they could start; "
    "answered UNAVAILABLE, not run.", ["service", "method"])
RPC_CALLS_REFUSED = Counter(
    "mantelzorg_rpc_calls_refused_total",
    "Calls refused UNAUTHENTICATED before they ran: unsigned from outside the platform, a "
    "signature not valid, an assertion for another call, replayed.", ["service", "method",
                                                                       "reason"])
OUTBOX_PENDING = Gauge(
    "mantelzorg_outbox_pending_events", "Events written but not yet published.", ["service"])
OUTBOX_LAG = Gauge(
    "mantelzorg_outbox_oldest_pending_age_seconds",
    "Age of the oldest event not yet published (consumer-side delay).", ["service"])

# Business metrics: what the platform does for caregivers, per service that does it.
DECLARATIONS_ISSUED = Counter(
    "mantelzorg_declarations_issued_total", "Declarations issued, by municipality.",
    ["municipality"])
DECLARATIONS_WAITING = Gauge(
    "mantelzorg_declarations_waiting",
    "Declaration requests waiting for the municipality's decision, by municipality.",
    ["municipality"])
DECLARATIONS_OLDEST_WAITING = Gauge(
    "mantelzorg_declarations_oldest_waiting_age_seconds",
    "Age of the oldest declaration request waiting for a decision, by municipality; the "
    "decision is due eight weeks after the request (Awb 4:13).", ["municipality"])
DECLARATIONS_OVERDUE = Gauge(
    "mantelzorg_declarations_overdue",
    "Declaration requests past their decision due date without a decision, by municipality.",
    ["municipality"])
TRAVEL_CLAIMS_PAID = Counter(
    "mantelzorg_travel_claims_paid_total", "Travel claims paid out in a payout batch.")
TRAVEL_EUROS_PAID = Counter(
    "mantelzorg_travel_paid_euros_total", "Euros paid out for travel claims.")
BAGS_SHIPPED = Counter(
    "mantelzorg_bags_shipped_total", "Information bags shipped, by municipality.",
    ["municipality"])

FROZEN_OBJECTS = Gauge(
    "mantelzorg_gc_frozen_objects",
    "Objects moved out of the garbage collector's sight once the service had started.",
    ["service"])

# nameko entrypoint classes by the kind label they get.
_KIND_NAMES = {"Rpc": "rpc", "HttpRequestHandler": "http", "Timer": "timer"}


def entrypoint_kind(entrypoint):
    for cls in type(entrypoint).__mro__:   # subclasses (the gateway's JSON handler) count as theirs
        if cls.__name__ in _KIND_NAMES:
            return _KIND_NAMES[cls.__name__]
    name = type(entrypoint).__name__
    return "event" if "Event" in name else name.lower()


class EntrypointMetrics(DependencyProvider):
    """Counts every worker of the service with its outcome and duration."""

    def __init__(self):
        self.started = WeakKeyDictionary()

    def worker_setup(self, worker_ctx):
        self.started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.pop(worker_ctx, None)
        service = self.container.service_name
        entrypoint = worker_ctx.entrypoint.method_name
        kind = entrypoint_kind(worker_ctx.entrypoint)
        outcome = "success"
        if exc_info is not None:
            outcome = "error"
            ERRORS.labels(service, entrypoint, kind, exc_info[0].__name__).inc()
        elif getattr(result, "status_code", 200) >= 500:
            outcome = "error"
            ERRORS.labels(service, entrypoint, kind, f"http_{result.status_code}").inc()
        REQUESTS.labels(service, entrypoint, kind, outcome).inc()
        if started is not None:
            DURATION.labels(service, entrypoint, kind).observe(time.perf_counter() - started)


def set_waiting_declarations(waiting, now):
    """``waiting``: {municipality: {"waiting", "oldest" (created_at), "overdue"}}. A
    municipality with nothing waiting any more drops out of the gauges."""
    gauges = (DECLARATIONS_WAITING, DECLARATIONS_OLDEST_WAITING, DECLARATIONS_OVERDUE)
    for gauge in gauges:
        gauge.clear()
    for municipality, counts in waiting.items():
        oldest = counts["oldest"]
        if oldest.tzinfo is None:   # the store answers UTC without its zone
            oldest = oldest.replace(tzinfo=now.tzinfo)
        DECLARATIONS_WAITING.labels(municipality).set(counts["waiting"])
        DECLARATIONS_OLDEST_WAITING.labels(municipality).set(
            max((now - oldest).total_seconds(), 0))
        DECLARATIONS_OVERDUE.labels(municipality).set(counts["overdue"])


def metrics_response():
    """(status, headers, body) for a nameko @http handler."""
    return 200, {"Content-Type": CONTENT_TYPE_LATEST}, generate_latest().decode()


def _metrics_page(environ, start_response):
    """The same text format as every other process's ``/metrics`` (Prometheus would
    otherwise negotiate OpenMetrics here, whose counters it files under other names)."""
    status, headers, body = metrics_response()
    start_response(f"{status} OK", list(headers.items()))
    return [body.encode()]


class MetricsServer(DependencyProvider):
    """``/metrics`` on an address of its own (config key ``METRICS_ADDRESS``), for a process
    whose web server is public: the gateway's metrics are for Prometheus, not for clients."""

    def setup(self):
        self.address = parse_address(self.container.config["METRICS_ADDRESS"])
        self.socket = None

    def start(self):
        self.socket = eventlet.listen((self.address.address, self.address.port))
        self.thread = self.container.spawn_managed_thread(self._serve)

    def _serve(self):
        wsgi.server(self.socket, _metrics_page, log=logging.getLogger("nameko.web.server"),
                    log_output=False)

    def stop(self):
        if self.socket is not None:
            self.thread.kill()
            self.socket.close()
            self.socket = None
