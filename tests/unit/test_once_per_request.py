"""Every mutation done once per request identity (``common.storage.once_per_request``), on
an embedded store of its own: a retry gets the first answer, a run that did not finish left
nothing behind, two calls of one request at once do it once. Through the gateway and the
services on the real broker: tests/integration/test_idempotency.py."""
import json
import os

import eventlet
import pytest

from common.crypto import DataCipher
from common.errors import Conflict
from common.storage import (DONE_REQUESTS, DocumentStore, OnceRequest, RequestTransactionFailed,
                            once_per_request)

CIPHER = DataCipher([("k1", os.urandom(32))])


@pytest.fixture(scope="module")
def store():
    store = DocumentStore("once_probe", "", ":memory:")
    yield store
    store.close()


class Killed(BaseException):
    """A process that stops in the middle of a request (SIGKILL, as far as the store sees)."""


class Service:
    """A service with one mutation: inserts a document and its event in a transaction,
    answers a view with a secret in it; ``fail_after_write`` stops it after the write."""

    def __init__(self, store, request_id):
        self.store = store
        self.once = OnceRequest(store, request_id, CIPHER)
        self.runs = 0
        self.fail_after_write = None
        self.committed = []

    @once_per_request
    def submit(self, name):
        self.runs += 1
        number = self.runs

        def work(session):
            self.store["things"].insert_one({"name": name, "run": number}, session=session)
            self.store["events"].insert_one({"name": name}, session=session)
            return number

        run = self.store.in_transaction(work)
        self.store.after_commit(lambda: self.committed.append(run))
        if self.fail_after_write:
            raise self.fail_after_write
        return {"name": name, "run": run, "code": "SECRET-123"}


def count(store, name):
    return (store["things"].count_documents({"name": name}),
            store["events"].count_documents({"name": name}))


def test_a_retry_gets_the_first_answer_and_nothing_runs_again(store):
    first = Service(store, "r-retry")
    answer = first.submit("retry")
    again = Service(store, "r-retry")
    assert again.submit("retry") == answer
    assert again.runs == 0
    assert count(store, "retry") == (1, 1)
    assert first.committed == [1] and again.committed == []
    stored = store[DONE_REQUESTS].find_one({"_id": "r-retry"})
    assert "SECRET-123" not in str(stored)    # the answer is sealed, bound to its request
    assert json.loads(CIPHER.decrypt(stored["sealed_answer"], context="r-retry")) == answer


def test_without_an_identity_every_call_runs(store):
    for _ in range(2):
        Service(store, None).submit("anonymous")
    assert count(store, "anonymous") == (2, 2)


def test_a_run_killed_before_its_answer_left_nothing_and_the_retry_runs_once(store):
    killed = Service(store, "r-killed")
    killed.fail_after_write = Killed()
    with pytest.raises(Killed):
        killed.submit("killed")
    assert count(store, "killed") == (0, 0)    # written, but never committed
    assert killed.committed == []
    retry = Service(store, "r-killed")
    assert retry.submit("killed")["run"] == 1
    assert count(store, "killed") == (1, 1)


def test_a_refusal_is_not_recorded_and_a_retry_runs(store):
    refused = Service(store, "r-refused")
    refused.fail_after_write = Conflict("no")
    with pytest.raises(Conflict):
        refused.submit("refused")
    assert count(store, "refused") == (0, 0)
    assert store[DONE_REQUESTS].find_one({"_id": "r-refused"}) is None
    assert Service(store, "r-refused").submit("refused")["run"] == 1


def test_two_calls_of_one_request_at_once_do_it_once(store):
    calls = [Service(store, "r-twice") for _ in range(2)]
    answers = [thread.wait() for thread in
               [eventlet.spawn(call.submit, "twice") for call in calls]]
    assert answers[0] == answers[1]
    assert count(store, "twice") == (1, 1)


def test_a_step_that_failed_and_was_caught_starts_the_request_again(store):
    """A step's writes stay in the request's transaction when it fails: a request that
    carries on all the same starts again from nothing, never commits the half step."""
    attempts = []

    class Retrying(Service):
        @once_per_request
        def submit(self, name):
            attempts.append(1)

            def half_step(session):
                self.store["things"].insert_one({"name": name, "half": True}, session=session)
                if len(attempts) == 1:
                    raise ValueError("the counters changed meanwhile")
                return "done"

            try:
                return self.store.in_transaction(half_step)
            except ValueError:
                # what a service does when a step meets a concurrent change: the next step
                # refuses to run in the broken transaction
                with pytest.raises(RequestTransactionFailed):
                    self.store.in_transaction(half_step)
                return "never answered"

    assert Retrying(store, "r-step").submit("step") == "done"
    assert len(attempts) == 2
    assert store["things"].count_documents({"name": "step"}) == 1


def test_work_in_steps_records_its_answer_after_the_last_step(store):
    class Batches(Service):
        @once_per_request(in_steps=True)
        def submit(self, name):
            self.runs += 1
            for step in range(3):   # each step commits by itself
                self.store.in_transaction(lambda session, s=step: self.store["things"].insert_one(
                    {"name": name, "step": s}, session=session))
            return {"steps": 3, "run": self.runs}

    answer = Batches(store, "r-steps").submit("steps")
    again = Batches(store, "r-steps")
    assert again.submit("steps") == answer and again.runs == 0
    assert store["things"].count_documents({"name": "steps"}) == 3
