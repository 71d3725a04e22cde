"""The envelope of an RPC call: its deadline, who makes it, and running it at most once.

Every call carries, in its headers (nameko context data, ``nameko.<key>``):

- ``deadline``: the absolute time (Unix seconds) after which its caller no longer waits. A
  service refuses a call whose deadline has passed, allowing ``RPC_CLOCK_SKEW_SECONDS``,
  before any work: answered UNAVAILABLE, acknowledged, counted
  (``mantelzorg_rpc_calls_expired_total``).
- ``call_id``: the call's own id, and ``assertion``: a short-lived EdDSA JWT of the gateway or
  of the ``mantelzorg`` operator command (each with a private key of its own; services hold
  only the public keys) bound to the target service (``aud``), the method (``mth``) and the
  call (``jti`` = the call id), valid until the deadline. The gateway's names the actor
  (``act``): the service takes the ``actor`` argument from it, never from the arguments. The
  operator's signs the arguments themselves (``arg``, a SHA-256 of their canonical JSON).
  The gateway's may name onward calls (``onw``, from ``ONWARD_CALLS``): the service it
  called passes it on to those methods alone, from its own broker user.
- A call without an assertion counts as made by the platform service whose broker user sent
  it (RabbitMQ's validated ``user_id``, see common/publishing.py): its ``actor`` is that
  service's system actor. Anything else is refused with UNAUTHENTICATED, nothing run.

A call and its reply are published with the broker's confirm awaited for a second, and
once more on a fresh connection without it (common/transport.py): a call may so arrive
twice, and the service drops the second delivery (``AtMostOnceRpcConsumer``).

``@rpc`` (this module's, not nameko's) is the entrypoint every service method uses;
``RpcProxy`` is the proxy a service calls another with.
"""
import hashlib
import heapq
import inspect
import json
import threading
import time
import uuid
from functools import partial

import jwt
import kombu.utils.json
import nameko.rpc
from nameko.exceptions import IncorrectSignature
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.standalone.rpc import ClusterRpcProxy

from common import config as settings
from common import crypto, metrics
from common.consumers import BrokerTolerantQueueConsumer
from common.errors import Forbidden, Unauthenticated, Unavailable
from common.logging import get_logger
from common.publishing import broker_users, connection_user
from common.transport import ReplyPublisher, RpcPublisher, TolerantReplyListener

DEADLINE_KEY, CALL_ID_KEY, ASSERTION_KEY = "deadline", "call_id", "assertion"
ENVELOPE_KEYS = (DEADLINE_KEY, CALL_ID_KEY, ASSERTION_KEY)
DEFAULT_CLOCK_SKEW_SECONDS = 1.0
DEFAULT_TIMEOUT_SECONDS = 5.0
# How long a call without a deadline is remembered, to drop a second delivery of it.
UNDATED_CALL_MEMORY_SECONDS = 60.0
ALGORITHM = "EdDSA"

# The calls a service makes on behalf of the user of the call it is running: the gateway
# binds its assertion to them too.
ONWARD_CALLS = {
    "travel_costs.submit_travel_claim": ("declaration.claim_eligibility",),
    "travel_costs.preview_travel_claim": ("declaration.claim_eligibility",),
}

log = get_logger()


def clock_skew(config):
    return settings.float_setting(config, "RPC_CLOCK_SKEW_SECONDS", DEFAULT_CLOCK_SKEW_SECONDS)


def system_actor(service):
    """Who a service is when it calls another as itself."""
    return {"sub": f"system:{service}", "role": "system", "service": service}


def arguments_digest(args, kwargs):
    """SHA-256 of the call's arguments as they travel (kombu's JSON), canonically written."""
    travelled = kombu.utils.json.loads(kombu.utils.json.dumps([list(args), kwargs]))
    canonical = json.dumps(travelled, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- signing ------------------------------------------------------------------------------

class CallSigner:
    """Signs the assertions of one issuer (``gateway`` or ``operator``)."""

    def __init__(self, issuer, private_key):
        self.issuer = issuer
        self.private_key = private_key

    @classmethod
    def load(cls, issuer, config=None, environ=None):
        return cls(issuer, crypto.call_signing_key(issuer, config, environ))

    def headers(self, service, method, seconds, actor=None, args=None, kwargs=None):
        """The envelope of one call of ``service.method`` that its caller waits ``seconds``
        for: with the actor (the gateway), or binding the arguments (the operator)."""
        deadline = time.time() + seconds
        call_id = uuid.uuid4().hex
        claims = {"iss": self.issuer, "aud": service, "mth": method, "jti": call_id,
                  "iat": int(time.time()), "exp": deadline}
        if actor is not None or args is None:
            claims["act"] = actor
        if args is not None:
            claims["arg"] = arguments_digest(args, kwargs or {})
        onward = ONWARD_CALLS.get(f"{service}.{method}")
        if onward:
            claims["onw"] = list(onward)
        return {DEADLINE_KEY: deadline, CALL_ID_KEY: call_id,
                ASSERTION_KEY: jwt.encode(claims, self.private_key, algorithm=ALGORITHM,
                                          headers={"kid": self.issuer})}


# --- the entrypoint -------------------------------------------------------------------------

class CallRefused(Exception):
    def __init__(self, reason, error):
        super().__init__(reason)
        self.reason = reason
        self.error = error


class CallIdentities(SharedExtension):
    """Per service process: the signers' public keys, the platform's broker users, and the
    assertions already used (a replayed call is refused)."""

    def setup(self):
        config = self.container.config
        with settings.stop_if_misconfigured():
            self.public_keys = crypto.call_public_keys(config)
        self.skew = clock_skew(config)
        self.users = broker_users(config)
        self.service = self.container.service_name
        self.used = Remembered()   # (call id, method), each until its call's deadline
        self.lock = threading.Lock()

    def expired(self, headers):
        return self.passed(headers.get(f"nameko.{DEADLINE_KEY}"))

    def passed(self, deadline):
        try:
            return deadline is not None and time.time() > float(deadline) + self.skew
        except (TypeError, ValueError):
            return True

    def actor(self, method, headers, user_id, args, kwargs):
        """(whose call it is, the actor to run it with or None to keep the arguments'), or
        CallRefused."""
        token = headers.get(f"nameko.{ASSERTION_KEY}")
        if token is None:
            callers = self.services_of(user_id)
            if not callers:
                raise CallRefused("unsigned", Unauthenticated("the call is not signed"))
            caller = self.service if self.service in callers else callers[0]
            return f"system:{caller}", system_actor(caller)
        claims, direct = self._verified(token, method, headers, user_id)
        if claims["iss"] == "operator":
            # The operator signed the arguments of the call it made; an onward call that its
            # assertion names comes with the arguments of the service it was made to.
            if direct and claims.get("arg") != arguments_digest(args, kwargs):
                raise CallRefused("arguments", Unauthenticated("the call's arguments are not "
                                                               "the signed ones"))
            return "operator", None
        return claims["iss"], claims.get("act")

    def services_of(self, user_id):
        """The platform services that connect as ``user_id`` (in development: all)."""
        return [name for name in settings.SERVICE_NAMES if user_id and self.users[name] == user_id]

    def _verified(self, token, method, headers, user_id):
        try:
            issuer = jwt.get_unverified_header(token).get("kid")
            key = self.public_keys.get(issuer)
            if key is None:
                raise jwt.InvalidTokenError("unknown signer")
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], leeway=self.skew,
                                options={"verify_aud": False,
                                         "require": ["iss", "aud", "mth", "jti", "exp"]})
        except jwt.PyJWTError:
            raise CallRefused("signature", Unauthenticated("the call's signature is not valid"))
        name = f"{self.service}.{method}"
        direct = claims["aud"] == self.service and claims["mth"] == method
        # passed on by the service it was made for, from that service's broker user
        onward = name in claims.get("onw", ()) and user_id == self.users[claims["aud"]]
        if claims["iss"] != issuer or not (direct or onward) \
                or claims["jti"] != headers.get(f"nameko.{CALL_ID_KEY}"):
            raise CallRefused("binding", Unauthenticated("the call's assertion is for "
                                                         "another call"))
        with self.lock:
            self.used.forget_passed(time.time())
            if (claims["jti"], name) in self.used:
                raise CallRefused("replayed", Unauthenticated("the call was made already"))
            self.used.add((claims["jti"], name), claims["exp"] + self.skew)
        return claims, direct


class Remembered:
    """Keys remembered each until a time of its own, forgotten in the order of those times:
    forgetting costs nothing per call that is still remembered (a look over every key at
    every call cost more the more calls were under way)."""

    def __init__(self):
        self.keys = set()
        self._forget_at = []   # heap of (when, a tie-breaker, key), the earliest first
        self._added = 0

    def __contains__(self, key):
        return key in self.keys

    def add(self, key, until):
        self._added += 1
        self.keys.add(key)
        heapq.heappush(self._forget_at, (until, self._added, key))

    def forget_passed(self, now):
        while self._forget_at and self._forget_at[0][0] < now:
            self.keys.discard(heapq.heappop(self._forget_at)[2])


class CallsTaken:
    """The calls a process has taken, by the reply address and correlation id their caller
    gave them, remembered until their deadline has passed (a copy arriving later is
    refused for its deadline anyway)."""

    def __init__(self, skew):
        self.skew = skew
        self.taken = Remembered()

    def first_time(self, message):
        """Whether this is the first delivery of its call; remembers it."""
        properties = message.properties
        if properties.get("correlation_id") is None:
            return True
        call = (properties.get("reply_to"), properties["correlation_id"])
        now = time.time()
        self.taken.forget_passed(now)
        if call in self.taken:
            return False
        try:
            until = float((message.headers or {})[f"nameko.{DEADLINE_KEY}"]) + self.skew
        except (KeyError, TypeError, ValueError):
            until = now + UNDATED_CALL_MEMORY_SECONDS
        self.taken.add(call, until)
        return True


class AtMostOnceRpcConsumer(nameko.rpc.RpcConsumer):
    """Runs a call at most once. The broker hands a call out again only when the process it
    went to died or lost its connection before answering (SIGKILL, a broker restart): by then
    the work may be done, and running it again could do it twice. So a redelivered call is
    answered UNAVAILABLE without running; the caller, told it failed, may look and ask again.
    A call its caller published twice (no confirm in time, see common/transport.py) is
    taken once: the second delivery is dropped without an answer, the first one's answers.
    Replies are confirmed as calls are (``ReplyPublisher``)."""

    queue_consumer = BrokerTolerantQueueConsumer()

    def setup(self):
        super().setup()
        self.calls_taken = CallsTaken(clock_skew(self.container.config))

    def handle_message(self, body, message):
        if message.delivery_info.get("redelivered"):
            method = message.delivery_info.get("routing_key", "")
            metrics.RPC_REDELIVERIES_REFUSED.labels(self.container.service_name, method).inc()
            get_logger().warning("rpc.redelivery_refused", method=method)
            self.refuse(message, Unavailable("the call was interrupted and may have been done; "
                                             "check before asking again"))
            return
        if not self.calls_taken.first_time(message):
            get_logger().info("rpc.duplicate_dropped",
                              method=message.delivery_info.get("routing_key", ""))
            self.queue_consumer.ack_message(message)
            return
        super().handle_message(body, message)

    def refuse(self, message, error):
        self.handle_result(message, None, (type(error), error, None))

    def handle_result(self, message, result, exc_info):
        config = self.container.config
        responder = nameko.rpc.Responder(
            settings.amqp_uri(config), nameko.rpc.get_rpc_exchange(config), None, message,
            ssl=config.get(nameko.rpc.AMQP_SSL_CONFIG_KEY),
            login_method=config.get(nameko.rpc.LOGIN_METHOD_CONFIG_KEY))
        responder.publisher_cls = ReplyPublisher
        result, exc_info = responder.send_response(result, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class SignatureReadOnce:
    """An entrypoint's check that a call fits its method, with the method's signature read
    once: nameko's own check (``inspect.getcallargs``) reads it anew for every call, 7 % of
    the gateway's CPU per request in a profile. Mixed into the platform's ``rpc`` and the
    gateway's HTTP entrypoints."""

    def check_signature(self, args, kwargs):
        signature = self.__dict__.get("_signature")
        if signature is None:
            signature = inspect.signature(getattr(self.container.service_cls, self.method_name))
            self._signature = signature
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc)) from None


class PlatformRpc(SignatureReadOnce, nameko.rpc.Rpc):
    """nameko's RPC entrypoint with the platform's envelope: a call runs at most once, only
    before its deadline, and only for a caller the service can prove (module docstring).
    ``@rpc(open=True)`` takes calls from anyone (``health``); ``@rpc(callers=(service, ...))``
    only from those services calling as themselves (and the operator)."""

    rpc_consumer = AtMostOnceRpcConsumer()
    identities = CallIdentities()

    def __init__(self, open=False, callers=None, **kwargs):
        super().__init__(**kwargs)
        self.open = open
        self.callers = callers

    def setup(self):
        super().setup()
        parameters = list(inspect.signature(
            getattr(self.container.service_cls, self.method_name)).parameters)[1:]
        self.actor_position = parameters.index("actor") if "actor" in parameters else None

    def handle_message(self, body, message):
        service, method = self.container.service_name, self.method_name
        headers = message.headers or {}
        if self.identities.expired(headers):
            self.rpc_consumer.refuse(message, expired_call(service, method))
            return
        if not self.open:
            try:
                args, kwargs = list(body["args"]), dict(body["kwargs"])
                user_id = message.properties.get("user_id")
                caller, actor = self.identities.actor(method, headers, user_id, args, kwargs)
                if self.callers is not None and caller != "operator" and not (
                        caller.startswith("system:")
                        and set(self.callers) & set(self.identities.services_of(user_id))):
                    raise CallRefused("caller", Forbidden("this call is not for you"))
            except CallRefused as refused:
                metrics.RPC_CALLS_REFUSED.labels(service, method, refused.reason).inc()
                log.warning("rpc.call_refused", method=method, reason=refused.reason)
                self.rpc_consumer.refuse(message, refused.error)
                return
            except (KeyError, TypeError):
                return super().handle_message(body, message)   # nameko's MalformedRequest
            if caller != "operator":   # the operator's arguments are signed as they are
                self._set_actor(args, kwargs, actor)
            body = {**body, "args": args, "kwargs": kwargs}
        super().handle_message(body, message)

    def _set_actor(self, args, kwargs, actor):
        if self.actor_position is None:
            return
        if len(args) > self.actor_position:
            args[self.actor_position] = actor
        else:
            kwargs["actor"] = actor


rpc = PlatformRpc.decorator


def expired_call(service, method):
    """Counts a call refused for its deadline; the error its caller (long gone) is sent."""
    metrics.RPC_CALLS_EXPIRED.labels(service, method).inc()
    log.warning("rpc.deadline_passed", method=method)
    return Unavailable("the caller stopped waiting before the call could start; try again")


class DeadlineAtStart(DependencyProvider):
    """The deadline checked again as the worker starts: a call that passed its deadline while
    it waited for a free worker (every one busy) is refused then, before the method runs."""

    def worker_setup(self, worker_ctx):
        entrypoint = worker_ctx.entrypoint
        if not isinstance(entrypoint, PlatformRpc) \
                or not entrypoint.identities.passed(worker_ctx.data.get(DEADLINE_KEY)):
            return
        refusal = expired_call(entrypoint.container.service_name, entrypoint.method_name)

        def refuse(*_args, **_kwargs):
            raise refusal
        setattr(worker_ctx.service, entrypoint.method_name, refuse)   # this worker's only


# --- calling ----------------------------------------------------------------------------------

class EnvelopedMethodProxy(nameko.rpc.MethodProxy):
    """A call whose envelope ``envelope(service, method, args, kwargs, inherited)`` gives
    (headers to set); the envelope keys of the worker's own call are not passed on unless
    it says so. Published as ``RpcPublisher`` does: confirmed within a second, or once more
    on a fresh connection."""

    publisher_cls = RpcPublisher

    def __init__(self, worker_ctx, service_name, method_name, reply_listener, envelope,
                 **options):
        super().__init__(worker_ctx, service_name, method_name, reply_listener, **options)
        self.envelope = envelope
        self.extra = {}

    def _call(self, *args, **kwargs):
        self.extra = self.envelope(self.service_name, self.method_name, args, kwargs,
                                   dict(self.worker_ctx.context_data or {}))
        return super()._call(*args, **kwargs)

    def get_message_headers(self, worker_ctx):
        headers = {key: value for key, value in super().get_message_headers(worker_ctx).items()
                   if self._strip_header_name(key) not in ENVELOPE_KEYS}
        headers.update({self._get_header_name(key): value for key, value in self.extra.items()
                        if value is not None})
        return headers

    def _strip_header_name(self, key):
        return key[len(self.header_prefix) + 1:] if key.startswith(f"{self.header_prefix}.") \
            else key


class EnvelopedServiceProxy(nameko.rpc.ServiceProxy):
    def __init__(self, worker_ctx, service_name, reply_listener, envelope, **options):
        super().__init__(worker_ctx, service_name, reply_listener, **options)
        self.envelope = envelope

    def __getattr__(self, name):
        return EnvelopedMethodProxy(self.worker_ctx, self.service_name, name,
                                    self.reply_listener, self.envelope, **self.options)


def onward_envelope(timeout, service, method, _args, _kwargs, inherited):
    """A service's call to another: its deadline is the call's own timeout, never later than
    the deadline of the call the service is running; the assertion of that call is passed on
    only when it names this call as an onward one, else the service calls as itself."""
    deadline = time.time() + timeout
    if inherited.get(DEADLINE_KEY) is not None:
        deadline = min(deadline, float(inherited[DEADLINE_KEY]))
    headers = {DEADLINE_KEY: deadline}
    token = inherited.get(ASSERTION_KEY)
    if token:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = {}
        if f"{service}.{method}" in claims.get("onw", ()):
            headers.update({ASSERTION_KEY: token, CALL_ID_KEY: inherited.get(CALL_ID_KEY)})
    return headers


class RpcProxy(nameko.rpc.RpcProxy):
    """How a service calls another: the replies come to a listener of their own
    (``TolerantReplyListener``), the call carries its deadline (``timeout_setting``, in
    seconds, default RPC_TIMEOUT_SECONDS) and the service's broker user."""

    rpc_reply_listener = TolerantReplyListener()

    def __init__(self, target_service, timeout_setting=("RPC_TIMEOUT_SECONDS",
                                                        DEFAULT_TIMEOUT_SECONDS), **options):
        super().__init__(target_service, **options)
        self.timeout_setting = timeout_setting

    def get_dependency(self, worker_ctx):
        config = self.container.config
        timeout = settings.float_setting(config, *self.timeout_setting)
        return EnvelopedServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener,
                                     partial(onward_envelope, timeout),
                                     user_id=connection_user(config), **self.options)


class EnvelopedClusterRpcProxy(ClusterRpcProxy):
    """nameko's standalone proxy whose calls carry the headers of ``envelope(service, method,
    args, kwargs, inherited)``; ``options`` go to the publisher (``user_id``)."""

    def __init__(self, config, envelope, timeout=None, options=None, **kwargs):
        super().__init__(config, timeout=timeout, **kwargs)
        self._proxy = SignedClusterProxy(self._worker_ctx, self._reply_listener, envelope,
                                         options or {})


class SignedClusterRpcProxy(EnvelopedClusterRpcProxy):
    """The operator's proxy (the ``mantelzorg`` command, tests, benchmarks): every call
    signed with the operator's key, binding its arguments; ``with`` gives the proxy."""

    def __init__(self, config, timeout=None, environ=None, **kwargs):
        signer = CallSigner.load("operator", config, environ)
        seconds = timeout or 60

        def envelope(service, method, args, kwargs_, _inherited):
            return signer.headers(service, method, seconds, args=args, kwargs=kwargs_)

        super().__init__(config, envelope, timeout=timeout, **kwargs)


class SignedClusterProxy:
    def __init__(self, worker_ctx, reply_listener, envelope, options):
        self._worker_ctx = worker_ctx
        self._reply_listener = reply_listener
        self._envelope = envelope
        self._options = options

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return EnvelopedServiceProxy(self._worker_ctx, name, self._reply_listener,
                                     self._envelope, **self._options)

    def __getitem__(self, name):
        return getattr(self, name)

