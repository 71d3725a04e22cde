"""The ``Idempotency-Key`` header: a mutation sent again with the same key and body within
24 hours answers what the first one answered and runs nothing again. A key whose request
never finished (its gateway died) is free again once that request's deadline has passed.

Keys are scoped per caller (token subject and role), so two clients' keys never meet. The
key is recorded as running before the mutation runs (one atomic insert decides who runs it);
its answer is stored after, sealed with the data key bound to the record, because an answer
may hold personal data or a secret such as a verification code.

A request whose reply was lost after its service committed the work (the service killed, the
broker restarted) is answered UNAVAILABLE and its key freed, so the retry runs again. The
gateway therefore also sends each call of the request a request identity: a keyed hash of the
key's record and the body, never the key itself. Every mutation of a service records that
identity with its writes and answers a second call with the first answer
(``common.storage.once_per_request``)."""
import hashlib
import json
from datetime import timedelta


from common import clock
from common import config as settings
from common.crypto import data_cipher, keyed_hash
from common.errors import BadUserInput, Conflict
from common.storage import Storage
from gateway.storage import RUNNING, IdempotencyStore

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
DEFAULT_CLOCK_SKEW = 2.0


def _sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def body_hash(body):
    """The same request body, whatever the order of its keys or its spacing."""
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def record_id(principal, key):
    return _sha256("\x1f".join((principal.role or "", principal.sub or "", key)))


def request_identity(lookup_hash, principal, key, body):
    """What the services know of a request sent with an Idempotency-Key: the same for the
    same caller, key and body, and nothing that could be turned back into them."""
    return lookup_hash("idempotent-request", record_id(principal, key), body_hash(body))


def _changed_nothing(answer):
    """An answer whose mutations all failed for want of a service: the caller was told to
    try again, and the request expired on the broker rather than run later."""
    codes = {error.get("extensions", {}).get("code") for error in answer.get("errors", ())}
    return "UNAVAILABLE" in codes and not any((answer.get("data") or {}).values())


class IdempotentMutations:
    def __init__(self, store, cipher, lookup_hash=None, clock_skew_seconds=DEFAULT_CLOCK_SKEW):
        self.store = store
        self.cipher = cipher
        self.lookup_hash = lookup_hash
        # How far the clocks of two gateway replicas may differ: a key is taken over only
        # that long after its deadline by the other's clock.
        self.clock_skew = timedelta(seconds=clock_skew_seconds)

    def _until(self, now, seconds):
        return now + timedelta(seconds=seconds) + self.clock_skew

    def extend(self, key, principal, seconds):
        """The request with ``key`` may now take ``seconds`` from now (a long call)."""
        self.store.extend(record_id(principal, key), self._until(clock.now(), seconds))

    def request_identity(self, key, principal, body):
        return request_identity(self.lookup_hash, principal, key, body)

    def answer_once(self, key, principal, body, run, now=None, deadline_seconds=60):
        """``run()``'s answer the first time this caller sends ``key`` with ``body``; the
        stored answer after that. ``deadline_seconds``: how long the request may take (the
        key of a request that has not finished by then, its gateway gone, is free again
        after that and ``clock_skew``)."""
        if not key.isprintable() or not key.strip() or len(key) > MAX_KEY_CHARS:
            raise BadUserInput(f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_KEY_CHARS} "
                               "printable characters", field=IDEMPOTENCY_HEADER)
        record, digest = record_id(principal, key), body_hash(body)
        now = now or clock.now()
        stored = self.store.claim(record, digest, now, self._until(now, deadline_seconds))
        if stored is not None:
            if stored["body"] != digest:
                raise Conflict(f"this {IDEMPOTENCY_HEADER} was used for a different request; "
                               "use a new key for a new request", field=IDEMPOTENCY_HEADER)
            if stored["state"] == RUNNING:
                raise Conflict(f"the request with this {IDEMPOTENCY_HEADER} is still running; "
                               "retry later", field=IDEMPOTENCY_HEADER)
            return self.cipher.decrypt(stored["answer"], context=record)
        answer = None
        try:
            answer = run()
        finally:
            if answer is None or _changed_nothing(answer):
                self.store.release(record)
            else:
                self.store.finish(record, self.cipher.encrypt(answer, context=record))
        return answer


class Idempotency(Storage):
    """Injects the gateway's IdempotentMutations: its database (``mantelzorg_gateway``, whose
    store class is given), the data key that seals the stored answers and the lookup key of
    the request identities."""

    def __init__(self, store_class=IdempotencyStore):
        super().__init__(store_class)
        self.mutations = None

    def setup(self):
        super().setup()
        with settings.stop_if_misconfigured():
            cipher = data_cipher(self.container.config)
            lookup_hash = keyed_hash(self.container.config)
        self.mutations = IdempotentMutations(
            self.store, cipher, lookup_hash, settings.float_setting(
                self.container.config, "CLOCK_SKEW_SECONDS", DEFAULT_CLOCK_SKEW))

    def get_dependency(self, worker_ctx):
        return self.mutations
