"""The Idempotency-Key logic on the gateway's store (an embedded server of its own, in
memory): what runs, what is answered again, what is forgotten after 24 hours. Through the
gateway on the real broker: tests/integration/test_idempotency.py."""
import os
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidTag

from common import clock
from common.crypto import DataCipher, KeyedHash
from common.errors import BadUserInput, Conflict
from gateway.auth import Principal
from gateway.idempotency import IdempotentMutations, body_hash, record_id, request_identity
from gateway.storage import KEYS, IdempotencyStore
from tests.support import store_in_memory

ADMIN = Principal(sub="a", role="admin")
BODY = {"query": "mutation { x }", "variables": {"code": "123456"}}


@pytest.fixture(scope="module")
def store():
    with store_in_memory(IdempotencyStore, "gateway_probe") as store:
        yield store


@pytest.fixture
def mutations(store):
    return IdempotentMutations(store, DataCipher([("k1", os.urandom(32))]))


class Mutation:
    """Counts its runs; answers what it is told to."""

    def __init__(self, answer=None):
        self.runs = 0
        self.answer = answer

    def __call__(self):
        self.runs += 1
        return self.answer or {"data": {"x": {"run": self.runs, "code": "123456"}}}


def test_the_same_key_and_body_runs_once_and_answers_the_same(mutations, store):
    mutation = Mutation()
    first = mutations.answer_once("k-same", ADMIN, BODY, mutation)
    reordered = {"variables": {"code": "123456"}, "query": "mutation { x }"}
    assert mutations.answer_once("k-same", ADMIN, reordered, mutation) == first
    assert mutation.runs == 1
    stored = store[KEYS].find_one({"_id": record_id(ADMIN, "k-same")})
    assert "123456" not in str(stored)   # the answer is sealed
    with pytest.raises(InvalidTag):       # and bound to its record
        mutations.cipher.decrypt(stored["answer"], context=record_id(ADMIN, "other"))


def test_a_different_body_with_the_same_key_is_a_conflict(mutations):
    mutation = Mutation()
    mutations.answer_once("k-body", ADMIN, BODY, mutation)
    with pytest.raises(Conflict, match="different request"):
        mutations.answer_once("k-body", ADMIN, {**BODY, "variables": {"code": "1"}}, mutation)
    assert mutation.runs == 1


def test_a_request_still_running_makes_its_retry_a_conflict(mutations):
    mutation = Mutation()

    def first_run():
        with pytest.raises(Conflict, match="still running; retry later"):
            mutations.answer_once("k-running", ADMIN, BODY, mutation)
        return mutation()

    mutations.answer_once("k-running", ADMIN, BODY, first_run)
    assert mutation.runs == 1
    assert mutations.answer_once("k-running", ADMIN, BODY, mutation)["data"]["x"]["run"] == 1


def test_a_key_left_running_by_a_dead_gateway_is_free_once_its_deadline_passed(mutations):
    """A gateway died with the request running: its key is held until the request's
    deadline (and the allowed clock skew) has passed, not for 24 hours; then a retry with
    the same body runs, and one with another body is still refused."""
    dead = Mutation()
    started = clock.now() - timedelta(seconds=20)
    mutations.store.claim(record_id(ADMIN, "k-dead"), body_hash(BODY), started,
                          mutations._until(started, 15))     # and then nothing: it died
    retry = Mutation()
    with pytest.raises(Conflict, match="still running"):        # 15 s + 2 s skew: not yet
        mutations.answer_once("k-dead", ADMIN, BODY, retry, now=started + timedelta(seconds=16))
    with pytest.raises(Conflict, match="different request"):
        mutations.answer_once("k-dead", ADMIN, {**BODY, "variables": {}}, retry)
    assert retry.runs == 0
    answer = mutations.answer_once("k-dead", ADMIN, BODY, retry)
    assert retry.runs == 1 and dead.runs == 0
    assert mutations.answer_once("k-dead", ADMIN, BODY, retry) == answer
    assert retry.runs == 1


def test_a_long_call_holds_the_key_as_long(mutations, store):
    record = record_id(ADMIN, "k-long")

    def long_request():
        mutations.extend("k-long", ADMIN, 600)
        held = store[KEYS].find_one({"_id": record})["deadline"]
        assert held > clock.now() + timedelta(seconds=590)
        with pytest.raises(Conflict, match="still running"):
            mutations.answer_once("k-long", ADMIN, BODY, Mutation(),
                                  now=clock.now() + timedelta(seconds=120))
        return {"data": {"x": "paid"}}

    assert mutations.answer_once("k-long", ADMIN, BODY, long_request,
                                 deadline_seconds=15) == {"data": {"x": "paid"}}


def test_callers_have_keys_of_their_own(mutations):
    mutation = Mutation()
    mutations.answer_once("k-callers", ADMIN, BODY, mutation)
    for other in (Principal(sub="b", role="admin"), Principal(sub="a", role="partner")):
        mutations.answer_once("k-callers", other, BODY, mutation)
    assert mutation.runs == 3


def test_a_key_is_forgotten_after_24_hours(mutations, store):
    mutation = Mutation()
    then = clock.now() - timedelta(hours=24, minutes=1)
    mutations.answer_once("k-old", ADMIN, BODY, mutation, now=then)
    assert mutations.answer_once("k-old", ADMIN, BODY, mutation)["data"]["x"]["run"] == 2
    stored = store[KEYS].find_one({"_id": record_id(ADMIN, "k-old")})
    assert stored["created_at"] > then + timedelta(hours=24)
    index = store[KEYS].index_information()["created_at_1"]
    assert index["expireAfterSeconds"] == 24 * 3600


def test_a_key_not_yet_24_hours_old_is_remembered(mutations):
    mutation = Mutation()
    then = clock.now() - timedelta(hours=23, minutes=59)
    mutations.answer_once("k-day", ADMIN, BODY, mutation, now=then)
    assert mutations.answer_once("k-day", ADMIN, BODY, mutation)["data"]["x"]["run"] == 1


def test_an_answer_that_changed_nothing_for_want_of_a_service_is_not_kept(mutations):
    unavailable = {"data": {"x": None}, "errors": [{"message": "the service did not answer",
                                                    "extensions": {"code": "UNAVAILABLE"}}]}
    mutation = Mutation(unavailable)
    mutations.answer_once("k-down", ADMIN, BODY, mutation)
    mutations.answer_once("k-down", ADMIN, BODY, mutation)
    assert mutation.runs == 2
    refused = {"data": {"x": None}, "errors": [{"message": "no",
                                                "extensions": {"code": "FORBIDDEN"}}]}
    mutation = Mutation(refused)
    mutations.answer_once("k-refused", ADMIN, BODY, mutation)
    assert mutations.answer_once("k-refused", ADMIN, BODY, mutation) == refused
    assert mutation.runs == 1


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "line\nbreak"])
def test_a_bad_key_is_refused_and_runs_nothing(mutations, key):
    mutation = Mutation()
    with pytest.raises(BadUserInput) as refused:
        mutations.answer_once(key, ADMIN, BODY, mutation)
    assert refused.value.field == "Idempotency-Key"
    assert mutation.runs == 0


def test_the_request_identity_services_see_is_keyed_and_follows_caller_key_and_body():
    lookup_hash = KeyedHash(os.urandom(32))
    identity = request_identity(lookup_hash, ADMIN, "k-private", BODY)
    assert identity == request_identity(lookup_hash, ADMIN, "k-private", dict(reversed(BODY.items())))
    assert "k-private" not in identity and "123456" not in identity
    others = {request_identity(lookup_hash, Principal(sub="b", role="admin"), "k-private", BODY),
              request_identity(lookup_hash, ADMIN, "k-other", BODY),
              request_identity(lookup_hash, ADMIN, "k-private", {**BODY, "variables": {}}),
              request_identity(KeyedHash(os.urandom(32)), ADMIN, "k-private", BODY)}
    assert identity not in others and len(others) == 4
