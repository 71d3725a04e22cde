"""What a resolver knows of the request: who asks, how to reach the services, and until when
the request may take."""
import time

import eventlet

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
        return self.send(service_name, method, *args, **kwargs).result(timeout)

    def send(self, service_name, method, *args, **kwargs):
        """Starts an RPC call; ``.result(timeout)`` waits for its answer. Several calls sent
        before waiting run at the same time."""
        self._check_deadline()
        proxy = getattr(getattr(self.service, service_name), method)
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
