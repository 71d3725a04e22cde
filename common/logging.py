"""structlog JSON logging with a correlation id that follows a request across services.

The correlation id lives in nameko's worker context data, which nameko copies into the
headers of every RPC call and event a worker makes; the outbox relay adds it to events too.
"""
import logging
import re
import sys
import uuid

import structlog
from nameko.extensions import DependencyProvider

CORRELATION_KEY = "correlation_id"
CORRELATION_HEADER = "X-Correlation-ID"

# Nine digits standing alone (a BSN) and Dutch/European IBANs, with or without spaces.
_BSN_SHAPE = re.compile(r"(?<![\w-])\d{9}(?![\w-])")
_IBAN_SHAPE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_SENSITIVE_KEYS = {"bsn", "iban", "caregiver_bsn", "bsn_hash"}
REDACTED = "[redacted]"


def redact_text(text):
    return _BSN_SHAPE.sub(REDACTED, _IBAN_SHAPE.sub(REDACTED, text))


def _redact(value):
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in _SENSITIVE_KEYS else _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def redact_personal_data(_logger, _method, event_dict):
    """structlog processor: BSN- and IBAN-shaped values never reach a log line."""
    return _redact(event_dict)


_configured = False


def configure_logging(service_name, level=None, stream=None):
    """JSON lines on stdout, for structlog and for the standard library (nameko, kombu)."""
    global _configured
    level = level or logging.INFO
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, _add_service(service_name), redact_personal_data,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared[:3], structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _add_service(service_name), redact_personal_data,
                    structlog.processors.JSONRenderer()],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("mantelzorg", "nameko"):
        logging.getLogger(name).setLevel(level)
    quiet_libraries()
    _configured = True


def quiet_libraries():
    # amqp warns about late publisher confirms on channels being closed, and the embedded
    # store reports its own shutdown order; neither is something an operator can act on.
    logging.getLogger("amqp").setLevel(logging.ERROR)
    # The web server's own access line would repeat "entrypoint.completed" without the
    # correlation id, and cost a second formatted line per HTTP request.
    logging.getLogger("nameko.web.server").setLevel(logging.WARNING)
    logging.getLogger("secantus.storage.close").setLevel(logging.CRITICAL)


def _add_service(service_name):
    def add(_logger, _method, event_dict):
        event_dict.setdefault("service", service_name)
        return event_dict
    return add


def get_logger(**initial):
    return structlog.get_logger("mantelzorg", **initial)


def new_correlation_id():
    return str(uuid.uuid4())


class CorrelatedLogging(DependencyProvider):
    """Binds the correlation id (taken from the caller or new) to every log line a worker
    writes, and keeps it in the worker context so that outgoing calls and events carry it.
    Injects a bound structlog logger."""

    def setup(self):
        if not _configured:
            configure_logging(self.container.service_name)

    def worker_setup(self, worker_ctx):
        correlation_id = worker_ctx.data.get(CORRELATION_KEY) or _correlation_from_request(worker_ctx)
        worker_ctx.data[CORRELATION_KEY] = correlation_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            correlation_id=correlation_id, entrypoint=worker_ctx.entrypoint.method_name)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        # One line per call handled, timers excepted: the access log, with the correlation id.
        if type(worker_ctx.entrypoint).__name__ != "Timer":
            fields = {"outcome": "error" if exc_info else "success",
                      "error": exc_info[0].__name__ if exc_info else None}
            status = getattr(result, "status_code", None)     # an HTTP entrypoint's answer
            if status is not None:
                fields["http_status"] = status
            get_logger().info("entrypoint.completed", **fields)

    def worker_teardown(self, worker_ctx):
        structlog.contextvars.clear_contextvars()

    def get_dependency(self, worker_ctx):
        return get_logger()


def _correlation_from_request(worker_ctx):
    request = worker_ctx.args[0] if worker_ctx.args else None
    return correlation_from_headers(getattr(request, "headers", None))


def correlation_from_headers(headers):
    """The caller's X-Correlation-ID when it has a sane shape, else a new one."""
    incoming = headers.get(CORRELATION_HEADER) if headers is not None else None
    if incoming and re.fullmatch(r"[A-Za-z0-9._-]{8,64}", incoming):
        return incoming
    return new_correlation_id()
