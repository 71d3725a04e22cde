"""What a resolver knows of the request: who asks, how to reach the services, and until when
the request may take."""
import time

import eventlet
import eventlet.semaphore
from nameko.extensions import SharedExtension
from nameko.rpc import ServiceProxy

from common import config as settings
from common.calls import CallSigner, EnvelopedMethodProxy, RpcProxy
from common.errors import Unavailable
from common.storage import REQUEST_KEY

DEFAULT_DEADLINE_SECONDS = 15


def call_identity(request_id, service_name, method, nth=1):
    """The identity the ``nth`` call of ``service_name.method`` in a request carries."""
    return f"{request_id}:{service_name}.{method}:{nth}"


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
        # Set for a mutation sent with an Idempotency-Key (gateway/idempotency.py): every call
        # carries an identity derived from it, the same again when the request is retried.
        self.request_id = None
        # Told how many seconds from now the request may take when a long call extends its
        # deadline (the Idempotency-Key is held as long).
        self.on_deadline_extended = None
        self._calls_made = {}
        # Declaration applicants already answered in this request, by declaration id: their
        # reads are recorded once, also when root fields running at once ask for the same
        # one (gateway/schema/declarations.py).
        self.applicants = {}
        self.applicants_lock = eventlet.semaphore.Semaphore()

    @property
    def actor(self):
        return self.principal.as_actor() if self.principal is not None else None

    def long_call(self, service_name, method, *args, setting, default):
        """A call that may take longer than an ordinary one (a payout batch of many claims):
        its own timeout from the configuration ``setting``, which the request's deadline
        is extended to as well."""
        seconds = max(self.timeout, settings.float_setting(self.service.config, setting, default))
        self.deadline = max(self.deadline, time.monotonic() + seconds)
        if self.on_deadline_extended is not None:
            self.on_deadline_extended(self.deadline - time.monotonic())
        return self.call(service_name, method, *args, timeout=seconds)

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
        proxy = getattr(self.service, service_name).expiring(
            method, expires_in, self.actor, request_id=self._call_identity(service_name, method))
        return PendingCall(self, proxy.call_async(*args, **kwargs))

    def _call_identity(self, service_name, method):
        """The request identity of one call: the request's, and which call of this method it
        is (a mutation's fields run one after another, so a retry numbers them alike)."""
        if self.request_id is None:
            return None
        name = f"{service_name}.{method}"
        self._calls_made[name] = made = self._calls_made.get(name, 0) + 1
        return call_identity(self.request_id, service_name, method, made)

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


class GatewayCallSigner(SharedExtension):
    """The gateway's key for the assertions its calls carry (common/calls.py)."""

    def setup(self):
        with settings.stop_if_misconfigured():
            self.signer = CallSigner.load("gateway", self.container.config)


class ExpiringRpcProxy(RpcProxy):
    """The gateway's RPC proxy: every call carries a message expiration, its deadline and
    the gateway's signed assertion of who asks (see GraphQLContext.send)."""

    call_signer = GatewayCallSigner()

    def get_dependency(self, worker_ctx):
        return ExpiringServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener,
                                    self.call_signer.signer, **self.options)


class ExpiringServiceProxy(ServiceProxy):
    def __init__(self, worker_ctx, service_name, reply_listener, signer, **options):
        super().__init__(worker_ctx, service_name, reply_listener, **options)
        self.signer = signer

    def expiring(self, method, seconds, actor, request_id=None):
        """The proxy of ``method`` whose requests the broker drops after ``seconds``, signed
        for ``actor`` with that deadline, and that carry ``request_id`` (when given) in their
        context data."""
        def envelope(service, name, _args, _kwargs, _inherited):
            headers = self.signer.headers(service, name, seconds, actor=actor)
            if request_id is not None:
                headers[REQUEST_KEY] = request_id
            return headers

        return EnvelopedMethodProxy(self.worker_ctx, self.service_name, method,
                                    self.reply_listener, envelope, expiration=seconds,
                                    **self.options)
