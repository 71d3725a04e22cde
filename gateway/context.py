"""What a resolver knows of the request: who asks, how to reach the services, and until when
the request may take."""
import time

import eventlet
from nameko.rpc import MethodProxy, RpcProxy, ServiceProxy

from common.errors import Unavailable

DEFAULT_DEADLINE_SECONDS = 15


class DeadlineExceeded(Unavailable):
    """The request's overall time is up; no further service is asked."""


class GraphQLContext:
    """What a resolver knows of the request: who asks, how to reach the services, and until
    when (``deadline_seconds`` from now) the request may take."""

    def __init__(self, service, principal, timeout, deadline_seconds=DEFAULT_DEADLINE_SECONDS):
        self.service = service
        self.principal = principal
        self.timeout = timeout
        self.deadline_seconds = deadline_seconds
        self.deadline = time.monotonic() + self.deadline_seconds

    @property
    def actor(self):
        return self.principal.as_actor()

    def call(self, service_name, method, *args, timeout=None, **kwargs):
        """An RPC call that answers UNAVAILABLE instead of waiting for ever."""
        return self._send(service_name, method, args, kwargs, timeout).result(timeout)

    def send(self, service_name, method, *args, **kwargs):
        """Starts an RPC call; ``.result(timeout)`` waits for its answer. Several calls sent
        before waiting run at the same time."""
        return self._send(service_name, method, args, kwargs)

    def _send(self, service_name, method, args, kwargs, timeout=None):
        # The request expires on the broker when its caller stops waiting: a call answered
        # UNAVAILABLE because its service is down does not run when the service returns.
        expires_in = self.seconds_left(timeout)
        proxy = getattr(self.service, service_name).expiring(method, expires_in)
        return PendingCall(self, proxy.call_async(*args, **kwargs))

    def seconds_left(self, timeout=None):
        """How long a call may still wait: its own timeout, cut to the request's deadline."""
        self._check_deadline()
        return min(timeout or self.timeout, self.deadline - time.monotonic())

    def _check_deadline(self):
        if time.monotonic() >= self.deadline:
            raise DeadlineExceeded(f"the request took longer than {self.deadline_seconds:g} s; "
                                   "ask for less or try again later")


class PendingCall:
    def __init__(self, context, reply):
        self.context = context
        self.reply = reply

    def result(self, timeout=None, until=None):
        """The answer; TimeoutError after ``timeout`` seconds (or at the monotonic time
        ``until``), DeadlineExceeded when the request's time is up first."""
        wait = self.context.seconds_left(timeout)
        if until is not None:
            wait = min(wait, until - time.monotonic())
        try:
            with eventlet.Timeout(max(wait, 0.001), TimeoutError):
                return self.reply.result()
        except TimeoutError:
            self.context._check_deadline()   # the request's own time is up: say that
            raise


class ExpiringRpcProxy(RpcProxy):
    """nameko's RPC proxy whose calls carry a message expiration (see GraphQLContext.send)."""

    def get_dependency(self, worker_ctx):
        return ExpiringServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener,
                                    **self.options)


class ExpiringServiceProxy(ServiceProxy):
    def expiring(self, method, seconds):
        """The proxy of ``method`` whose requests the broker drops after ``seconds``."""
        return MethodProxy(self.worker_ctx, self.service_name, method, self.reply_listener,
                           expiration=seconds, **self.options)
